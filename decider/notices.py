"""A notice composed from its template as an RFC 5322 message, pure.

Everything a notice quotes from a message (its Subject above all, but also addresses and detect
names) is untrusted: a value becomes one line of text (CR, LF, every other control character
and the Unicode line separators turn into spaces) before it is put in a template, and the
rendered Subject is folded and RFC 2047-encoded by the email package, so no value can start a
header field or the body of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from schemas.notifications import NOTICE_FIELDS, NoticeTemplate

# C0 and C1 controls, DEL, NEL and the Unicode line and paragraph separators.
_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MAX_VALUE = 998  # a value longer than an RFC 5322 line is cut
MAX_LISTED = 50  # recipients or detects listed in one value
# CRLF line ends, and a body transfer-encoded to 7 bits: the notice is ASCII whatever it quotes.
SEVEN_BIT = SMTP.clone(cte_type="7bit")


def one_line(value: str, limit: int = MAX_VALUE) -> str:
    """`value` as one line of text: runs of control characters become one space."""
    text = _BREAKING.sub(" ", value).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def listed(values: Sequence[str]) -> str:
    shown = [one_line(v, 256) for v in values[:MAX_LISTED]]
    more = len(values) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def render(template: str, values: Mapping[str, str]) -> str:
    """The template with every placeholder filled; a field a notice lacks is empty."""
    filled = {name: values.get(name, "") for name in NOTICE_FIELDS}
    return template.format_map(filled)


def clean_values(values: Mapping[str, str]) -> dict[str, str]:
    # `entries` is the digest's list, one line per entry, each already made one line.
    return {k: (v if k == "entries" else one_line(v)) for k, v in values.items()}


def compose(
    template: NoticeTemplate, values: Mapping[str, str], *, notice_id: str, to: Sequence[str],
    from_domain: str, now: datetime,
) -> str:
    """The notice as an RFC 5322 message (ASCII only: non-ASCII text is encoded, RFC 2047 in
    the header, quoted-printable or base64 in the body), ready for MAIL FROM:<>."""
    safe = clean_values(values)
    message = EmailMessage(policy=SEVEN_BIT)
    message["From"] = f"KATA notifications <MAILER-DAEMON@{from_domain}>"
    message["To"] = ", ".join(to)
    message["Subject"] = one_line(render(template.subject, safe))
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{notice_id}@{from_domain}>"
    # RFC 3834: an automatic message, which auto-responders must not answer.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render(template.body, safe), charset="utf-8")
    return message.as_bytes().decode("ascii")
