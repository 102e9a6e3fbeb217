"""The verdict header on delivered mail (`verdict_header_name`, `verdict_header_format`), pure.

When the setting names a header, apply removes every field of that name the message arrived
with (any case, `Name :` with blanks before the colon, its continuation lines), so a sender
cannot hand a downstream filter a forged clean verdict, and adds its own at the end of the
header section. Only the header section is read (as the subject tag reads it); the body is
never touched. When the setting is off, nothing is removed or added: a same-named field from
outside then means nothing to katagate, and a filter must not trust it.

The verdict words, from the decision (`ActionDecided.reason`):

- `not-detected`: KATA scanned it and found nothing;
- `detected`: KATA detected an event and the rule's action is Skip (delivered, tagged);
- `skipped:<reason>`: delivered unscanned (*Skipped*), the reason with '-' for '_':
  `timeout`, `error`, `size-limit`, `count-limit`, `too-large`, `kata-disabled`,
  `rule-kata-disabled`, `not-connected`, `forced-release` (and any reason added later).

`scanned_at` is when the verdict came (UTC, `2026-12-02T14:03:53Z`), or when the message was
decided when no verdict came; `scan_id` the KATA scan id (`none` without a verdict);
`detects` the detect names, comma-separated (`none`); `message_id` katagate's id.

Changing a header breaks a DKIM signature that covers it (docs/SECURITY.md, "Header changes and
DKIM").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas import ActionDecided, Detect, KataSettings, VerdictReceived
from schemas.raw_mail import HEADER_SCAN_LIMIT, TRACE_RESERVE, scan_headers

DETECTS_CHARS = 400  # the value stays one line under RFC 5322's 998 octets
_UNSAFE = re.compile(r"[^\x21-\x7e]|[,;]")  # no blanks, controls, or the value's separators


@dataclass(frozen=True)
class Scanned:
    """What the verdict header tells of the message's scan."""

    verdict: str
    scanned_at: datetime
    scan_id: str | None
    detects: tuple[Detect, ...] = ()


def verdict_word(decision: ActionDecided) -> str:
    reason = decision.reason.replace("_", "-")
    return f"skipped:{reason}" if decision.skipped else reason


def header_value(template: str, scanned: Scanned, message_id: str) -> str:
    """The header's value: `template` (checked by KataSettings) with its placeholders filled
    with values that hold no line break, blank or control character."""
    names = [_UNSAFE.sub("_", d.name or d.type) for d in scanned.detects]
    detects = ",".join(names)[:DETECTS_CHARS] or "none"
    at = scanned.scanned_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return template.format(verdict=scanned.verdict, scanned_at=at,
                           scan_id=scanned.scan_id or "none", detects=detects,
                           message_id=message_id)


@dataclass(frozen=True)
class HeaderEdit:
    data: bytes
    removed: int  # same-named fields that came from outside
    added: bool
    note: str = ""  # why nothing was done


def strip_fields(raw: bytes, name: str) -> HeaderEdit:
    """`raw` without any header field named `name` (case-insensitive)."""
    scan = scan_headers(raw, HEADER_SCAN_LIMIT + TRACE_RESERVE, name.lower().encode("ascii"))
    if scan is None:  # ingest refuses such messages: only an old or hand-made one gets here
        return HeaderEdit(raw, 0, False, "header section too large to read: left as it was")
    fields, _, _ = scan
    kept, start = [], 0
    for found in fields:
        kept.append(raw[start:found.start])
        start = found.end
    kept.append(raw[start:])
    return HeaderEdit(b"".join(kept), len(fields), False)


def set_verdict_header(raw: bytes, name: str, value: str) -> HeaderEdit:
    """Every `name` field from outside removed, ours added after the last header field."""
    stripped = strip_fields(raw, name)
    if stripped.note:
        return stripped
    scan = scan_headers(stripped.data, HEADER_SCAN_LIMIT + TRACE_RESERVE, b"")
    assert scan is not None  # noqa: S101 - stripping only shortened a header that fitted
    _, insert_at, eol = scan
    data = stripped.data
    field = f"{name}: {value}".encode("ascii") + eol
    if insert_at > 0 and data[insert_at - 1] != 0x0A:  # the message ends inside its header
        return HeaderEdit(data + eol + field, stripped.removed, True)
    return HeaderEdit(data[:insert_at] + field + data[insert_at:], stripped.removed, True)


def for_delivery(raw: bytes, settings: KataSettings, decision: ActionDecided,
                 verdict: VerdictReceived | None, message_id: str) -> HeaderEdit:
    """The message as delivered under `settings` (those it was received under)."""
    name = settings.verdict_header_name
    if name is None:
        return HeaderEdit(raw, 0, False)
    scanned = Scanned(
        verdict_word(decision),
        verdict.occurred_at if verdict is not None else decision.occurred_at,
        verdict.scan_id if verdict is not None else None,
        tuple(verdict.detects) if verdict is not None else ())
    return set_verdict_header(raw, name, header_value(settings.verdict_header_format, scanned,
                                                      message_id))
