"""RFC 3464 delivery status notifications (NDRs) for rejected or undeliverable messages.

`build_ndr` is pure: ids and instants come in as arguments. The bytes it returns are a complete
`multipart/report; report-type=delivery-status` message with CRLF line endings:

1. `text/plain` for people: the message was not delivered, the short reason, the recipients. For
   a KATA reject it says that KATA detected a threat, and nothing of the threat's details.
2. `message/delivery-status` (RFC 3464): Reporting-MTA, Arrival-Date, and per recipient
   Final-Recipient, Action: failed, Status, Diagnostic-Code. Non-ASCII addresses use the
   `utf-8` address type with `\\x{HEX}` escapes (RFC 6533 section 3), so the part stays ASCII.
3. `text/rfc822-headers` (RFC 3462): the original's header section, line endings made CRLF, at
   most 16 KiB of it, cut at a field boundary (a folded field's continuation lines go with it).

The bound is low because the header section is the sender's to write: an NDR or DSN goes to the
envelope sender, who may not have written those headers (a forged sender), so whatever we
return is reflected at a third party (backscatter); 16 KiB holds any honest trace.

**The caller must send the NDR with the null envelope sender `<>`** (RFC 5321 4.5.5, RFC 3464
section 2), so that an NDR can never cause another NDR; `smtp_out.deliver(envelope_from="")`.

Values we write into headers are checked: addresses, host names and ids holding CR, LF or other
control characters raise `ValueError` (they cannot come from a valid SMTP session); free text
(`reason`, `diagnostic`) is folded to one line of printable characters and cut.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime
from email.utils import format_datetime
from typing import Literal

from katagate.schemas.raw_mail import header_end

# kata_unscanned: rejected by `hold_outcome` = reject, KATA gave no verdict (no threat found).
NdrKind = Literal["kata_reject", "kata_unscanned", "delivery_failed"]
SendDecision = Literal["send", "null_sender", "ndr_disabled"]

MAX_ORIGINAL_HEADERS = 16 * 1024
_CUT_NOTE = b"X-Katagate-Note: original headers cut at 16 KiB\r\n"
_MAX_REASON = 200
_MAX_DIAGNOSTIC = 900
# A host name as machines name themselves (socket.getfqdn() may hold "_"), or an address literal.
_HOST = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])$")
_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_STATUS = re.compile(r"^[45]\.[0-9]{1,3}\.[0-9]{1,3}$")
_CONTROLS = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]+")
_QCHAR_SPECIALS = frozenset("\\+=")


KATA_REJECT_REASON = "KATA detected a threat in this message"
# A held message rejected by hold_outcome: why KATA gave no verdict, by the decision's reason.
UNSCANNED_REASONS = {
    "timeout": "KATA gave no verdict within the response timeout",
    "not_connected": "KATA was not connected", "size_limit": "the KATA Quarantine was full",
    "count_limit": "the KATA Quarantine was full", "error": "KATA could not scan it",
    "too_large": "the message is over the 200 MB KATA scan limit",
}


def reject_reason(held: bool, reason: str | None) -> str:
    """The NDR's reason for a rejected message: KATA's verdict, or (a held message rejected
    by hold_outcome) why KATA gave none, by the decision's reason."""
    if not held:
        return KATA_REJECT_REASON
    return UNSCANNED_REASONS.get(reason or "", "KATA gave no verdict")


def should_send_ndr(envelope_from: str, ndr_enabled: bool) -> tuple[bool, SendDecision]:
    """Whether to send an NDR: never to the null sender `<>` (RFC 5321), not when switched off.

    Only the null sender is exempt, as RFC 3464 has it: a MAILER-DAEMON or postmaster sender that
    is not `<>` still gets its NDR. The reasons match `NdrSuppressed.reason`.
    """
    if envelope_from.strip() in ("", "<>"):
        return False, "null_sender"
    if not ndr_enabled:
        return False, "ndr_disabled"
    return True, "send"


def build_ndr(
    *,
    original: bytes,
    envelope_from: str,
    recipients: list[str],
    reporting_mta: str,
    reason: str,
    status: str,
    diagnostic: str | None,
    arrival: datetime,
    now: datetime,
    message_id: str,
    dsn_id: str,
    kind: NdrKind = "kata_reject",
) -> bytes:
    """The NDR for `recipients` of the message `message_id`, to `envelope_from` (see module).
    `original` is the raw message (or its start): only its header section is returned."""
    _check(envelope_from, recipients, reporting_mta, status, message_id, dsn_id, arrival, now)
    reason_line = _one_line(reason, _MAX_REASON) or "not delivered"
    returned = _original_headers(original)
    human = _human_text(kind, reporting_mta, reason_line, recipients, message_id)
    report = _delivery_status(reporting_mta, message_id, arrival, recipients, status,
                              diagnostic, reason_line, kind)
    boundary = _boundary(dsn_id, "\n".join(human + report).encode("utf-8") + returned)
    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{envelope_from}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {format_datetime(now)}",
        f"Message-ID: <{dsn_id}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        f"X-Katagate-Message-Id: {message_id}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    lines = [*headers, "", "This is a MIME-encapsulated message.", ""]
    lines += [f"--{boundary}", "Content-Description: Notification", *human, ""]
    lines += [f"--{boundary}", "Content-Description: Delivery report",
              "Content-Type: message/delivery-status", "", *report, ""]
    head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    cte = "8bit" if not returned.isascii() else "7bit"
    original_part = (
        f"--{boundary}\r\nContent-Description: Undelivered Message Headers\r\n"
        f"Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode("ascii")
    return head + original_part + returned + f"\r\n--{boundary}--\r\n".encode("ascii")


def _check(envelope_from: str, recipients: list[str], reporting_mta: str, status: str,
           message_id: str, dsn_id: str, arrival: datetime, now: datetime) -> None:
    if envelope_from.strip() in ("", "<>"):
        raise ValueError("no NDR to the null sender <> (see should_send_ndr)")
    if not recipients:
        raise ValueError("an NDR needs at least one recipient")
    for address in (envelope_from, *recipients):
        unusable = _CONTROLS.search(address) or "<" in address or ">" in address
        if not address or unusable or len(address) > 256:
            raise ValueError(f"not a usable address: {address!r}")
    if not _HOST.match(reporting_mta):
        raise ValueError(f"reporting_mta must be a host name: {reporting_mta!r}")
    if not _STATUS.match(status):
        raise ValueError(f"status must be a 4.x.x or 5.x.x enhanced status code: {status!r}")
    for name, value in (("message_id", message_id), ("dsn_id", dsn_id)):
        if not _ID.match(value):
            raise ValueError(f"{name} must match [A-Za-z0-9._-]{{1,128}}: {value!r}")
    for name, instant in (("arrival", arrival), ("now", now)):
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware")


def _human_text(kind: NdrKind, reporting_mta: str, reason: str, recipients: list[str],
                message_id: str) -> list[str]:
    if kind == "kata_reject":
        why = ["Your message was rejected and not delivered: Kaspersky Anti Targeted Attack",
               "Platform (KATA) detected a threat in it."]
    elif kind == "kata_unscanned":
        why = ["Your message was rejected and not delivered: it could not be scanned by",
               "Kaspersky Anti Targeted Attack Platform (KATA), and this gateway does not",
               "deliver mail it could not scan. No threat was found; you may send it again."]
    else:
        why = ["Your message could not be delivered to one or more recipients."]
    body = [
        f"This is the mail system at host {reporting_mta}.", "", *why, "",
        f"Reason: {reason}", "", "Recipients:", *(f"  <{r}>" for r in recipients), "",
        f"Reference: {message_id}",
        "If you think this is an error, contact your postmaster and quote the reference.", "",
    ]
    text = "\r\n".join(body)
    if text.isascii():
        return ["Content-Type: text/plain; charset=us-ascii", "", text]
    encoded = base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64", "",
            encoded.rstrip("\r\n")]


def _delivery_status(reporting_mta: str, message_id: str, arrival: datetime,
                     recipients: list[str], status: str, diagnostic: str | None,
                     reason: str, kind: NdrKind) -> list[str]:
    fields = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"X-Katagate-Message-Id: {message_id}",
        f"Arrival-Date: {format_datetime(arrival)}",
    ]
    if diagnostic is not None and (text := _ascii_line(diagnostic, _MAX_DIAGNOSTIC)):
        code = f"smtp; {text}" if re.match(r"^[245][0-9]{2}\b", text) else f"X-Katagate; {text}"
    elif kind in ("kata_reject", "kata_unscanned"):
        code = f"X-Katagate; rejected by KATA protection: {_ascii_line(reason, 200)}"
    else:
        code = None
    for recipient in recipients:
        fields += ["", f"Final-Recipient: {_address_field(recipient)}", "Action: failed",
                   f"Status: {status}"]
        if code:
            fields.append(f"Diagnostic-Code: {code}")
    return fields


def _address_field(address: str) -> str:
    """`rfc822; a+b@c`, or `utf-8; j\\x{F6}rg@b` for an address that is not ASCII (RFC 6533)."""
    if address.isascii():
        return f"rfc822; {address}"
    escaped = "".join(
        c if "\x21" <= c <= "\x7e" and c not in _QCHAR_SPECIALS else f"\\x{{{ord(c):02X}}}"
        for c in address
    )
    return f"utf-8; {escaped}"


def _original_headers(raw: bytes) -> bytes:
    """The header section only, CRLF line endings, no trailing empty line; longer than 16 KiB,
    the whole fields within 16 KiB and a note saying so."""
    # Stored messages are CRLF already; any other line ending is made CRLF all the same, so no
    # bare CR or LF reaches the NDR whatever the caller passes. Normalising moves no byte nearer
    # the start, so the first MAX + 2 bytes hold all that the cap and header_end look at.
    block = raw[: MAX_ORIGINAL_HEADERS + 2]
    block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    end = header_end(block, MAX_ORIGINAL_HEADERS)
    if end is None:
        block = block[: _last_field_end(block, MAX_ORIGINAL_HEADERS)] + _CUT_NOTE
    else:
        block = block[:end]
    return block.rstrip(b"\r\n")


def _last_field_end(block: bytes, limit: int) -> int:
    """Where the last whole field within `limit` bytes ends: after a CRLF that no continuation
    line (one starting with a space or a tab) follows, so a folded field is kept or cut whole."""
    crlf = block.rfind(b"\r\n", 0, limit)
    while crlf >= 0:
        if block[crlf + 2: crlf + 3] not in (b" ", b"\t"):
            return crlf + 2
        crlf = block.rfind(b"\r\n", 0, crlf)
    return 0


def _boundary(dsn_id: str, content: bytes) -> str:
    """A boundary that occurs in no part: derived from the id, checked against the content."""
    seed = dsn_id.encode("ascii")
    for attempt in range(100):
        digest = hashlib.sha256(seed + attempt.to_bytes(2, "big")).hexdigest()[:24]
        boundary = f"=_katagate-dsn-{digest}"
        if boundary.encode("ascii") not in content:
            return boundary
    raise ValueError("could not find a boundary absent from the content")


def _one_line(text: str, limit: int) -> str:
    text = _CONTROLS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _ascii_line(text: str, limit: int) -> str:
    text = _CONTROLS.sub(" ", text).strip().encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."
