"""A notice composed from its template as an RFC 5322 message, pure.

Everything a notice quotes from a message (its Subject above all, but also addresses and detect
names) is untrusted: a value becomes one line of text (CR, LF, every other control character
and the Unicode line separators turn into spaces) before it is put in a template, and the
rendered Subject is folded and RFC 2047-encoded by the email package. The email package also
*decodes* encoded words it finds in a value it is given (and a Python without the
CVE-2024-6923 fix writes a decoded CR LF out as is), so `=?` never reaches it from a value: it is
broken by a zero-width space. Then the notice is parsed back and refused (`UnsafeNotice`) unless
it has exactly the header fields written here, one text part, the intended To, and fits in
MAX_NOTICE_BYTES: what we meant is what goes out, or nothing does.
"""

from __future__ import annotations

import email
import re
import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses

from katagate.schemas.errors import KatagateError
from katagate.schemas.notifications import MAX_NOTICE_BYTES, NOTICE_FIELDS, NoticeTemplate

# C0 and C1 controls, DEL, NEL and the Unicode line and paragraph separators.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MAX_VALUE = 998  # a value longer than an RFC 5322 line is cut
MAX_LISTED = 50  # recipients or detects listed in one value
# CRLF line ends, and a body transfer-encoded to 7 bits: the notice is ASCII whatever it quotes.
SEVEN_BIT = SMTP.clone(cte_type="7bit")
# The fields compose writes, in order; a parsed notice with any other set is refused.
NOTICE_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted",
                  "Content-Type", "Content-Transfer-Encoding", "MIME-Version")
# A recipient a notice can go to: an ASCII dot-atom mailbox (RFC 5322 atext), no encoded word.
_NOTICE_ADDRESS = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,189}$")


class UnsafeNotice(KatagateError):
    """A composed notice is not the message meant (a field or part more, another To, too
    large); its text is never shown, as it quotes the Subject."""


def notice_address(address: str) -> bool:
    """Whether `address` can be a notice's To (as written, with no quoting or encoding)."""
    return _NOTICE_ADDRESS.match(address) is not None and "=?" not in address


def one_line(value: str, limit: int = MAX_VALUE) -> str:
    """`value` as one line of text: runs of control characters become one space."""
    text = _BREAKING.sub(" ", value).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def no_encoded_words(value: str) -> str:
    """`value` with every `=?` broken, so no header parser decodes an encoded word in it."""
    return value.replace("=?", "=\u200b?")


def listed(values: Sequence[str]) -> str:
    shown = [one_line(v, 256) for v in values[:MAX_LISTED]]
    more = len(values) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with every placeholder filled; a field a notice lacks is empty. Format
    specs and conversions are refused by the template's validation and ignored here."""
    parts: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            parts.append(values.get(name, "") if name in NOTICE_FIELDS else "")
    return "".join(parts)


def clean_values(values: Mapping[str, str]) -> dict[str, str]:
    # `entries` is the digest's list, one line per entry, each already made one line.
    return {k: (v if k == "entries" else one_line(v)) for k, v in values.items()}


def compose(
    template: NoticeTemplate, values: Mapping[str, str], *, notice_id: str, to: Sequence[str],
    from_domain: str, now: datetime,
) -> str:
    """The notice as an RFC 5322 message (ASCII only: non-ASCII text is encoded, RFC 2047 in
    the header, quoted-printable or base64 in the body), ready for MAIL FROM:<>. Raises
    UnsafeNotice (or the email package's error) rather than return anything else."""
    unsafe = [a for a in to if not notice_address(a)]
    if unsafe or not to:
        raise UnsafeNotice(f"{len(unsafe)} of {len(to)} addresses cannot be a notice's To")
    safe = clean_values(values)
    message = EmailMessage(policy=SEVEN_BIT)
    message["From"] = f"KATA notifications <MAILER-DAEMON@{from_domain}>"
    message["To"] = ", ".join(to)
    message["Subject"] = no_encoded_words(one_line(render(template.subject, safe)))
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{notice_id}@{from_domain}>"
    # RFC 3834: an automatic message, which auto-responders must not answer.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render(template.body, safe), charset="utf-8")
    data = message.as_bytes().decode("ascii")
    check(data, to)
    return data


def check(data: str, to: Sequence[str]) -> None:
    """Fail closed: the notice as a receiver parses it must be the one composed."""
    if len(data) > MAX_NOTICE_BYTES:
        raise UnsafeNotice(f"the notice is {len(data)} bytes, over {MAX_NOTICE_BYTES}")
    parsed = email.message_from_string(data)
    if tuple(parsed.keys()) != NOTICE_HEADERS:
        raise UnsafeNotice(f"the notice's header fields are {len(parsed.keys())}, not the "
                           f"{len(NOTICE_HEADERS)} composed")
    if parsed.is_multipart() or parsed.get_content_type() != "text/plain":
        raise UnsafeNotice("the notice is not one text/plain part")
    if sorted(a for _, a in getaddresses(parsed.get_all("To", []))) != sorted(to):
        raise UnsafeNotice("the notice's To is not the addresses composed")
