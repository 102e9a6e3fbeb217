"""SMTP replies as named constants, and the enhanced status codes (RFC 2034/3463) added to the
fixed replies aiosmtpd writes by itself, since we advertise ENHANCEDSTATUSCODES.

A reply is one line `CODE SP ENHANCED SP text`; the tables here are the whole vocabulary of the
ingest stage, so the README's reply table and the code cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)

    @property
    def kind(self) -> str:
        """The reply class, for metrics: a bounded label."""
        return {2: "accepted", 4: "temporary", 5: "permanent"}.get(self.code // 100, "other")


# Success.
OK = Reply(250, "2.0.0", "Ok")
SENDER_OK = Reply(250, "2.1.0", "Sender ok")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient ok")
QUEUED = Reply(250, "2.0.0", "Ok: queued as {message_id}")  # fill in with .with_text

# Temporary failures: the sender keeps the message and retries.
KAFKA_UNAVAILABLE = Reply(451, "4.3.0", "Temporary failure, try again later")
# The next hop could not be asked whether it takes the recipient (Postfix's
# unverified_recipient_defer_code; 4.1.1: "bad destination mailbox address", for now).
UNVERIFIED_RECIPIENT = Reply(450, "4.1.1", "Recipient address rejected: unverified address")
# RFC 3463 4.3.1 "mail system full": the DATA bytes all sessions may hold are spent; the sender
# retries later, and the messages already in hand are not put at risk to make room.
DATA_BUDGET_FULL = Reply(451, "4.3.1", "Too much mail data in transit, try again later")
# on_unavailable = tempfail: KATA cannot scan it now, so the sender keeps it and retries (RFC
# 3463 4.7.0: "other or undefined security status").
KATA_NOT_CONNECTED = Reply(451, "4.7.0", "KATA not connected: not accepted unscanned, try again "
                                         "later")
KATA_QUARANTINE_FULL = Reply(451, "4.7.0", "KATA Quarantine full: not accepted unscanned, try "
                                           "again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands, closing connection")
TOO_MANY_SESSIONS = Reply(421, "4.7.0", "Too many connections, try again later")
TOO_MANY_FROM_CLIENT = Reply(421, "4.7.0", "Too many connections from this client")
IDLE_TIMEOUT = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
DATA_TOO_SLOW = Reply(421, "4.4.2", "DATA too slow, closing connection")
# Stopping (RFC 5321 3.8 and 4.2.1; RFC 3463 4.3.2 "system not accepting network messages"):
# the greeting of a connection during the drain, a command that would start new work, and a
# session still open at drain_timeout_s. Filled in with the host name, as the 220 greeting is.
DRAINING = Reply(421, "4.3.2", "{hostname} Service shutting down, try again later")

# Permanent failures: RFC 5321 section 4.3.2 lists 550 (not 554) among RCPT's replies, and 550
# is "command rejected for policy reasons"; 5.7.1 is "delivery not authorized" (RFC 3463).
RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied")
# The recipient does not exist: the relay recipient table or the next hop says so.
UNKNOWN_RECIPIENT = Reply(550, "5.1.1", "Recipient address rejected: User unknown")
NO_DOMAIN = Reply(553, "5.1.3", "Recipient address must have a domain")
BAD_SENDER = Reply(553, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT = Reply(553, "5.1.3", "Bad recipient address syntax")
# RFC 5321 section 4.5.3.1.10: "501 Path too long".
SENDER_TOO_LONG = Reply(501, "5.1.7", "Path too long")
RECIPIENT_TOO_LONG = Reply(501, "5.1.3", "Path too long")
BAD_HELO = Reply(501, "5.5.4", "Invalid HELO/EHLO argument")
TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
# A bare CR or LF lets a next hop see a message boundary the sender did not write (SMTP
# smuggling); NUL breaks MTAs. Refused, never repaired (see README).
BARE_NEWLINE = Reply(550, "5.6.11", "Bare CR/LF or NUL not allowed")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
# A message the subject tag could not mark whole: a detected one would pass for clean (see
# ingest/subject.py). 5.6.0: "other or undefined media error" (RFC 3463).
SUBJECT_FIELDS = Reply(554, "5.6.0", "More than one Subject header field")
HEADERS_TOO_LARGE = Reply(554, "5.6.0", "Header section too large")
TOO_LARGE = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
# on_unavailable = tempfail and over the 200 MB KATA scan cap: no retry could be scanned.
OVER_SCAN_LIMIT = Reply(552, "5.3.4", "Message over the 200 MB KATA scan limit: not accepted "
                                      "unscanned")
# More Received fields than hops allowed: a mail loop (RFC 5321 6.3). 5.4.6: "routing loop
# detected" (RFC 3463).
TOO_MANY_HOPS = Reply(554, "5.4.6", "Too many hops")

# PROXY protocol (ingest/proxy.py): before the greeting, then the connection is closed. 4xx:
# the sender is not at fault, the load balancer in front of us is (or is not ours).
PROXY_UNTRUSTED = Reply(421, "4.7.0", "PROXY protocol header not accepted from this address")
PROXY_MALFORMED = Reply(421, "4.5.2", "Malformed PROXY protocol header, closing connection")
PROXY_TIMEOUT = Reply(421, "4.4.2", "No PROXY protocol header in time, closing connection")
# XFORWARD (ingest/xforward.py), with Postfix's own texts and codes.
XFORWARD_DENIED = Reply(550, "5.7.0", "Error: insufficient authorization")
XFORWARD_SYNTAX = Reply(501, "5.5.4", "Syntax: XFORWARD attribute=value...")
XFORWARD_IN_TRANSACTION = Reply(503, "5.5.1", "Error: MAIL transaction in progress")
XFORWARD_BEFORE_HELO = Reply(503, "5.5.1", "Error: send HELO first")

# aiosmtpd's own fixed replies, given the enhanced code they lack.
_KNOWN: dict[str, str] = {
    "250 OK": str(OK),
    "221 Bye": "221 2.0.0 Bye",
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "503 Error: need RCPT command": "503 5.5.1 Error: need RCPT command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "500 Command line too long": "500 5.5.2 Command line too long",
    "552 Error: Too much mail data": str(TOO_LARGE),
    "552 Error: message size exceeds fixed maximum message size": str(TOO_LARGE),
    "530 Must issue a STARTTLS command first": str(TLS_REQUIRED),
    "554 Command refused due to lack of security": "554 5.7.0 Command refused: TLS failed",
}
_DEFAULT_ENHANCED = {
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4", 555: "5.5.4",
    421: "4.3.2", 454: "4.7.0",
}
_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_PLAIN = re.compile(r"^(\d{3}) (.*)$", re.DOTALL)


def enhance(line: str, line_too_long: str | None = None) -> str:
    """The reply line with an enhanced status code. Greeting (220), intermediate (354, 334)
    and multi-line EHLO replies are left alone, as RFC 2034 says."""
    if line.startswith("500 Line too long"):
        return line_too_long or str(LINE_TOO_LONG)
    if line in _KNOWN:
        return _KNOWN[line]
    match = _PLAIN.match(line)
    if match is None or _ENHANCED.match(line):
        return line
    code = int(match.group(1))
    if code in (220, 354, 334):
        return line
    enhanced = _DEFAULT_ENHANCED.get(code, f"{code // 100}.0.0")
    return f"{code} {enhanced} {match.group(2)}"
