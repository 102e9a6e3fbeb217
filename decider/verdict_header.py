"""The verdict header on delivered mail (`verdict_header_name`, `verdict_header_format`), pure.

When the setting names a header, apply removes every field of that name the message arrived
with and adds its own at the top of the header section (right after katagate's own Received
field), so a sender cannot hand a downstream filter a forged clean verdict, and a reader that
takes the first instance gets ours.

The strip reads the whole header section, up to the first empty line (CRLF CRLF; all of a
message that has none), whatever lines it holds. A field of our name goes even behind a line
that is not a header field (no colon, a blank or 8-bit byte in a name, a leading mbox `From `
line, which is line 2 behind our Received field): Python and Postfix start the body there, but a
lenient parser may read on. A line is ours when it starts with the name (any case) followed by
nothing but blanks, control or 8-bit bytes before a colon (`X-KATA-Verdict\v:`); its
continuation lines go with it. The section is read whole however large (a C-speed search,
bounded by the size limit the message was accepted under), so there is no "too large to read"
case that leaves a forged field in: the strip cannot fail open, and mail keeps flowing. The body
after the empty line is never touched. When the setting is off, nothing is removed or added: a
same-named field from outside then means nothing to katagate, and a filter must not trust it.

The verdict words, from the decision (`ActionDecided.reason`):

- `not-detected`: KATA scanned it and found nothing;
- `detected`: KATA detected an event and the rule's action is Skip (delivered, tagged);
- `skipped:<reason>`: delivered unscanned (*Skipped*), the reason with '-' for '_':
  `timeout`, `error`, `size-limit`, `count-limit`, `too-large`, `kata-disabled`,
  `rule-kata-disabled`, `not-connected`, `forced-release` (and any reason added later).

`scanned_at` is when the verdict came (UTC, `2026-12-02T14:03:53Z`), or when the message was
decided when no verdict came; `scan_id` the KATA scan id (`none` without a verdict; for a
verdict reused from the verdict cache, the original scan's id, `cached_from`);
`detects` the detect names, comma-separated (`none`); `message_id` katagate's id.

Changing a header breaks a DKIM signature that covers it (docs/SECURITY.md, "Header changes and
DKIM").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from katagate.schemas import ActionDecided, Detect, KataSettings, VerdictReceived
from katagate.schemas.raw_mail import header_end

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


# Our Received field, the first of a stored message (ingest/trace.py), with its continuations.
_RECEIVED_FIRST = re.compile(rb"received[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*", re.IGNORECASE)
# A field's first line through its last continuation line (the last may end the message).
_FIELD_LINES = re.compile(rb"[^\n]*\n?(?:[ \t][^\n]*\n?)*")


def _named(name: str) -> re.Pattern[bytes]:
    # Blanks, controls and 8-bit bytes between the name and the colon still make it ours: a
    # lenient reader may trim them. Not CR or LF: the colon must be on the name's own line.
    return re.compile(rb"^" + re.escape(name.encode("ascii")) + rb"[^\r\n\x21-\x7e]*:",
                      re.IGNORECASE | re.MULTILINE)


def strip_fields(raw: bytes, name: str) -> HeaderEdit:
    """`raw` without any field named `name` anywhere in its header section."""
    end = header_end(raw, len(raw))
    assert end is not None  # noqa: S101 - with no bound the section always ends
    kept: list[bytes] = []
    start = removed = 0
    for found in _named(name).finditer(raw, 0, end):
        lines = _FIELD_LINES.match(raw, found.start(), end)
        assert lines is not None  # noqa: S101 - the pattern matches the empty string too
        kept.append(raw[start:found.start()])
        start, removed = lines.end(), removed + 1
    if not removed:
        return HeaderEdit(raw, 0, False)
    kept.append(raw[start:])
    return HeaderEdit(b"".join(kept), removed, False)


def set_verdict_header(raw: bytes, name: str, value: str) -> HeaderEdit:
    """Every `name` field from outside removed, ours added at the top of the header section:
    after the first field when that is a Received field (ours), else first of all."""
    stripped = strip_fields(raw, name)
    data = stripped.data
    field = f"{name}: {value}\r\n".encode("ascii")
    received = _RECEIVED_FIRST.match(data)
    if received is None and b"\n" not in data and re.match(rb"(?i)received[ \t]*:", data):
        return HeaderEdit(data + b"\r\n" + field, stripped.removed, True)  # one unended line
    at = 0 if received is None else received.end()
    return HeaderEdit(data[:at] + field + data[at:], stripped.removed, True)


def for_delivery(raw: bytes, settings: KataSettings, decision: ActionDecided,
                 verdict: VerdictReceived | None, message_id: str) -> HeaderEdit:
    """The message as delivered under `settings` (those it was received under)."""
    name = settings.verdict_header_name
    if name is None:
        return HeaderEdit(raw, 0, False)
    scanned = Scanned(
        verdict_word(decision),
        verdict.occurred_at if verdict is not None else decision.occurred_at,
        # A verdict reused from the cache names the scan KATA made, not this message's id.
        (verdict.cached_from or verdict.scan_id) if verdict is not None else None,
        tuple(verdict.detects) if verdict is not None else ())
    return set_verdict_header(raw, name, header_value(settings.verdict_header_format, scanned,
                                                      message_id))
