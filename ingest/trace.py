"""The gateway's own `Received:` field (RFC 5321 section 4.4) and the hop count, pure.

Ingest prepends the field before the message is stored, so the bytes scanned, kept in Backup and
delivered are the same; the client's own bytes follow it unchanged. Every part of it that a
client chose (its HELO name, its reverse DNS name, a recipient) is reduced to the characters
its grammar allows, so no client text can end the field, start another, or pass for a clause:

    Received: from HELO (RDNS [IP])
    \tby GATEWAY with ESMTP id MESSAGE-ID
    \tfor <RECIPIENT>; Thu, 03 Dec 2026 10:35:42 +0000

`for` only for a message with one recipient (naming several would tell each of them the others,
RFC 5321 7.2); `with` SMTP, ESMTP or ESMTPS (RFC 3848; STARTTLS needs EHLO, so no SMTPS), or
the upstream MTA's protocol given by XFORWARD (ingest/xforward.py).
The field is at most `schemas.raw_mail.TRACE_RESERVE` octets, which the subject tag's scan
allows beyond the header section ingest accepts from a client.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from email.utils import format_datetime

from katagate.ingest import replies
from katagate.ingest.replies import Reply
from katagate.schemas.raw_mail import HEADER_SCAN_LIMIT, TRACE_RESERVE, header_end

UNKNOWN = "unknown"
# What a HELO or reverse DNS name may keep: a domain or an address literal ([192.0.2.1],
# [IPv6:2001:db8::1]). Anything else, parentheses and ';' above all, becomes '_'.
_NAME_DISALLOWED = re.compile(r"[^A-Za-z0-9.\-:\[\]]")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
# A recipient is named only when it is a plain mailbox (dot-atom local part): a quoted local
# part may hold ';', '(' or spaces, which readers of the field split on.
_PLAIN_MAILBOX = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,255}$")
_RECEIVED = re.compile(rb"^received[ \t]*:", re.IGNORECASE | re.MULTILINE)


def helo_name(name: str) -> str:
    """The HELO/EHLO argument as the field shows it; `unknown` when there was none."""
    cleaned = _NAME_DISALLOWED.sub("_", name[:255])
    return cleaned or UNKNOWN


def rdns_name(name: str | None) -> str:
    """The client's reverse DNS name when it is a host name, else `unknown`."""
    if name is None or not _HOSTNAME.fullmatch(name.rstrip(".")):
        return UNKNOWN
    return name.rstrip(".")


def address_literal(client_ip: str) -> str:
    """[192.0.2.1] or [IPv6:2001:db8::1] (RFC 5321 section 4.1.3)."""
    # Without a zone index: Python keeps any text after '%' in the address (CR LF too).
    address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    return f"[IPv6:{address.compressed}]" if address.version == 6 else f"[{address}]"


_PROTOCOL = re.compile(r"^[A-Z][A-Z0-9-]{0,63}$")


def protocol(extended: bool, tls: bool, forwarded: str | None = None) -> str:
    """How we received it; or, for a message an upstream MTA handed on with XFORWARD, how it
    received it (an atom: anything else gives ours), as Postfix writes it then."""
    if forwarded is not None and _PROTOCOL.fullmatch(forwarded):
        return forwarded
    if tls:
        return "ESMTPS"
    return "ESMTP" if extended else "SMTP"


def received_field(*, helo: str, rdns: str | None, client_ip: str, gateway: str,
                   extended: bool, tls: bool, message_id: str, recipients: tuple[str, ...],
                   at: datetime, forwarded_protocol: str | None = None) -> bytes:
    """The whole field, folded, ending in CRLF; `at` must be timezone-aware."""
    if at.tzinfo is None:
        raise ValueError("the Received field's time needs a time zone")
    if not _HOSTNAME.fullmatch(gateway):
        raise ValueError(f"not a host name: {gateway!r}")
    lines = [f"Received: from {helo_name(helo)} ({rdns_name(rdns)} {address_literal(client_ip)})",
             f"\tby {gateway} with {protocol(extended, tls, forwarded_protocol)} id {message_id}"]
    if len(recipients) == 1 and _PLAIN_MAILBOX.fullmatch(recipients[0]):
        lines.append(f"\tfor <{recipients[0]}>")
    lines[-1] += f"; {format_datetime(at)}"
    field = ("\r\n".join(lines) + "\r\n").encode("ascii")
    if len(field) > TRACE_RESERVE:  # cannot happen with the caps above; never store it
        raise ValueError(f"Received field of {len(field)} octets")
    return field


def hop_count(data: bytes) -> int:
    """The Received fields of the header section (continuation lines are not fields; the body
    is not looked at). Ingest has refused a header section over HEADER_SCAN_LIMIT already."""
    end = header_end(data, HEADER_SCAN_LIMIT)
    return len(_RECEIVED.findall(data, 0, len(data) if end is None else end))


def check_hops(data: bytes, limit: int) -> Reply | None:
    """A refusal when the message, with the field we add, would carry more than `limit`
    Received fields: it has gone round a loop (RFC 5321 section 6.3; Postfix's
    hopcount_limit)."""
    hops = hop_count(data)
    if hops + 1 > limit:
        return replies.TOO_MANY_HOPS.with_text(
            f"Too many hops: {hops} Received header fields, limit {limit} (a mail loop?)")
    return None
