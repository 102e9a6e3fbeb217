"""Delivery to the next-hop MTA over SMTP (`smtplib`, synchronous: run it in a thread).

`deliver` makes one attempt and says what happened; it never raises for anything the network or
the next hop does. Outcomes:

- **delivered**: the next hop took the message (`250` after the data) for the recipients it
  accepted; others may have been refused at RCPT (`recipients` holds each RCPT reply).
- **deferred**: try again later — a `4xx` reply (greeting, MAIL, RCPT for all, DATA), a `5xx`
  greeting (the host refuses to talk to us now: Postfix skips such hosts), a refused, reset,
  timed-out or dropped connection, a failed TLS handshake, STARTTLS required but not offered.
  A connection lost after the final dot is deferred too: the message may be delivered twice,
  which SMTP cannot rule out (RFC 1047); the receiver's Message-ID lets it de-duplicate.
- **failed**: a `5xx` reply to EHLO/HELO, MAIL, every RCPT, or the data; or data we refuse to
  send (a bare CR or LF could end the message early at the next hop: `smtplib` dot-stuffs only
  after CRLF), an address holding CR, LF or angle brackets, SMTPUTF8 needed but not offered.

`smtplib.sendmail` is not used: it hides the final reply and the per-recipient replies, and it
rewrites addresses through `email.utils.parseaddr`. Commands are sent as given with `docmd`;
the data goes through `SMTP.data`, which dot-stuffs and adds the final CRLF when it is missing
(the only change to the bytes, and one SMTP itself requires). MAIL carries SIZE= when offered,
BODY=8BITMIME for 8-bit data when offered (8-bit data goes as is when not: Postfix does the
same), SMTPUTF8 when an address is not ASCII (failed when not offered). The exceptions
`smtplib` raises (`SMTPHeloError`, `SMTPDataError`, `SMTPServerDisconnected`, ...) and the
socket's (`ConnectionRefusedError`, `TimeoutError` a.k.a. `socket.timeout`, `ssl.SSLError`,
`OSError`) are mapped as above.

TLS (`decider/next_hop_tls.py`): at level `may` (the default) STARTTLS is used when offered,
without checking the certificate; a refusal (`454`) continues in plain text, a failed handshake
defers (the connection is gone; set `none` for a next hop whose TLS is broken). `encrypt`
defers when STARTTLS is not offered, refused or fails; `verify` also when the certificate's
chain or name does not verify, with the verification error as the reply. `timeout_s` bounds
each socket operation, not the whole attempt.
"""

from __future__ import annotations

import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from katagate.decider.next_hop_tls import NextHopTls
from katagate.decider.smtp_client import SmtpClient

OutcomeKind = Literal["delivered", "deferred", "failed"]
_MAY = NextHopTls()

MAX_REPLY = 1000  # the events' SmtpReply limit
QUIT_TIMEOUT_S = 2.0  # how long a kept connection's QUIT waits for the next hop's reply

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_BAD_ADDRESS = re.compile("[\x00-\x1f\x7f<>\x85\u2028\u2029]")
# A host name as machines name themselves (socket.getfqdn() may hold "_"), or an address literal.
_HELO = re.compile(r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])$")


@dataclass(frozen=True)
class RecipientResult:
    recipient: str
    code: int | None  # the RCPT reply code; None when refused before sending (see reply)
    reply: str

    @property
    def accepted(self) -> bool:
        return self.code is not None and 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        """Refused for good: a 5xx, or refused by us before sending."""
        return self.code is None or self.code >= 500


@dataclass(frozen=True)
class DeliveryOutcome:
    kind: OutcomeKind
    reply: str  # the reply that decided, as one line ("250 2.0.0 Ok", "connection refused ...")
    code: int | None  # its SMTP code; None when there was no SMTP reply
    recipients: tuple[RecipientResult, ...] = ()  # RCPT results, when RCPT was reached
    tls: bool = False  # whether the session was encrypted when it ended

    @property
    def delivered_to(self) -> list[str]:
        if self.kind != "delivered":
            return []
        return [r.recipient for r in self.recipients if r.accepted]


def deliver(
    *,
    host: str,
    port: int,
    envelope_from: str,
    recipients: list[str],
    data: bytes,
    helo: str,
    timeout_s: float,
    tls: NextHopTls = _MAY,
    cache: SessionCache | None = None,
) -> DeliveryOutcome:
    """One delivery attempt of `data` to `recipients` at `host:port` (see the module docstring).

    `envelope_from` "" or "<>" is the null sender (for NDRs). Raises `ValueError` only for a
    `helo` that is not a host name or address literal (configuration, not mail). With `cache`,
    a connection that delivered is kept for the next delivery to the same next hop.
    """
    if not _HELO.match(helo):
        raise ValueError(f"helo must be a host name or an address literal: {helo!r}")
    refusal = _check(envelope_from, recipients, data)
    if refusal:
        return DeliveryOutcome("failed", f"refused before sending: {refusal}", None)
    sender = "" if envelope_from.strip() in ("", "<>") else envelope_from
    key = (host, port, helo, tls)
    session = cache.take(key) if cache is not None else None
    if session is None:
        session = _Session(host, port, helo, timeout_s, tls)
    try:
        return session.run(sender, recipients, data)
    except smtplib.SMTPResponseException as exc:
        return _outcome(_kind(exc.smtp_code), exc.smtp_code, exc.smtp_error, session)
    except smtplib.SMTPServerDisconnected as exc:
        return _outcome("deferred", None, f"connection lost: {exc}", session)
    except ConnectionRefusedError:
        return _outcome("deferred", None, f"connection refused by {host}:{port}", session)
    except TimeoutError:
        return _outcome("deferred", None, f"timed out after {timeout_s:g} s", session)
    except ssl.SSLCertVerificationError as exc:
        return _outcome("deferred", None, f"TLS certificate of {host}:{port} not verified: "
                        f"{exc.verify_message or exc}", session)
    except ssl.SSLError as exc:
        return _outcome("deferred", None, f"TLS failure: {exc}", session)
    except (OSError, smtplib.SMTPException) as exc:
        return _outcome("deferred", None, f"{type(exc).__name__}: {exc}", session)
    finally:
        if cache is not None and session.reusable:
            cache.give(key, session)
        else:
            session.close()


class _Session:
    def __init__(self, host: str, port: int, helo: str, timeout_s: float,
                 policy: NextHopTls) -> None:
        # `run` connects; STARTTLS checks (and sends as SNI) the policy's name, else the host.
        self.client = SmtpClient(local_hostname=helo, timeout=timeout_s, tls_name=policy.name)
        self.host = host
        self.port = port
        self.policy = policy
        self.tls = False
        self.results: tuple[RecipientResult, ...] = ()
        self.done = False
        self.greeted = False  # connected, EHLO (and STARTTLS) done: ready for MAIL
        self.reusable = False  # the last message was taken; the connection may carry another
        self.opened_at: float | None = None  # by the cache's clock, when first kept
        self.idle_since = 0.0

    def run(self, sender: str, recipients: list[str], data: bytes) -> DeliveryOutcome:
        client = self.client
        self.results, self.done, self.reusable = (), False, False
        if not self.greeted:
            code, reply = client.connect(self.host, self.port)
            if code != 220:  # 4xx or 5xx: the host will not talk to us now (Postfix moves on)
                return _outcome("deferred", code, reply, self)
            refused = self.hello()
            if refused is None:
                refused = self.start_tls()
            if refused is not None:
                return refused
            self.greeted = True
        options = []
        needs_utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        if needs_utf8:
            if not client.has_extn("smtputf8"):
                return _outcome("failed", None, "SMTPUTF8 is required (non-ASCII address) "
                                "but not offered by the next hop", self)
            client.command_encoding = "utf-8"
            options.append("SMTPUTF8")
        if client.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        if client.has_extn("8bitmime") and not data.isascii():
            options.append("BODY=8BITMIME")
        code, reply = client.docmd("MAIL", " ".join([f"FROM:<{sender}>", *options]))
        if code != 250:
            return _outcome(_kind(code), code, reply, self, reset=True)
        results = []
        for recipient in recipients:
            code, reply = client.docmd("RCPT", f"TO:<{recipient}>")
            results.append(RecipientResult(recipient, code, _line(code, reply)))
        self.results = tuple(results)
        if not any(r.accepted for r in results):
            first = next((r for r in results if not r.permanent), results[0])
            kind: OutcomeKind = "failed" if all(r.permanent for r in results) else "deferred"
            self.reset()
            return DeliveryOutcome(kind, first.reply, first.code, self.results, self.tls)
        code, reply = client.data(data)  # SMTPDataError when DATA itself is not answered 354
        self.done = True
        self.reusable = code == 250
        return _outcome("delivered" if code == 250 else _kind(code), code, reply, self)

    def hello(self) -> DeliveryOutcome | None:
        code, reply = self.client.ehlo()
        if code != 250:
            code, reply = self.client.helo()
        if code != 250:
            return _outcome(_kind(code), code, reply, self)
        return None

    def start_tls(self) -> DeliveryOutcome | None:
        if self.policy.level == "none":
            return None
        if not self.client.has_extn("starttls"):
            if self.policy.required:
                return _outcome("deferred", None, f"TLS is required ({self.policy.level}), but "
                                f"STARTTLS was not offered by {self.host}:{self.port}", self)
            return None
        try:
            self.client.starttls(context=self.policy.context)
        except smtplib.SMTPResponseException as exc:  # e.g. 454 TLS not available
            if self.policy.required:
                return _outcome("deferred", exc.smtp_code, exc.smtp_error, self)
            return None
        self.tls = True
        return self.hello()

    def reset(self) -> None:
        try:
            self.client.rset()
        except (OSError, smtplib.SMTPException):
            self.client.close()

    def still_good(self) -> bool:
        """A kept connection answers RSET before it carries another message (as Postfix's
        connection cache checks); one the next hop closed meanwhile does not."""
        try:
            code, _reply = self.client.rset()
        except (OSError, smtplib.SMTPException):
            return False
        return code == 250

    def close(self) -> None:
        try:
            if self.client.sock is not None:
                # The outcome is decided: a next hop slow to say goodbye holds only the caller,
                # which is the loop's sweep for every session kept (up to delivery_concurrency).
                self.client.sock.settimeout(QUIT_TIMEOUT_S)
                self.client.quit()
        except (OSError, smtplib.SMTPException):
            pass  # the outcome is decided; a failing QUIT changes nothing
        finally:
            self.client.close()


class SessionCache:
    """Connections to next hops kept between deliveries (Postfix's SMTP connection cache).

    A connection that delivered goes back here; the next delivery to the same next hop takes
    it after a successful RSET instead of connecting, greeting and negotiating TLS again. Kept
    at most `idle_s` unused (Postfix's smtp_connection_cache_time_limit, 2 s) and `max_age_s`
    in all (smtp_connection_reuse_time_limit, 300 s). Safe to share between threads: a
    connection is used by one delivery at a time.
    """

    def __init__(self, idle_s: float = 2.0, max_age_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self._clock = clock
        self._idle: dict[tuple[Any, ...], list[_Session]] = {}
        self._lock = threading.Lock()
        self.reused = 0  # deliveries that went over a kept connection

    def take(self, key: tuple[Any, ...]) -> _Session | None:
        self.sweep()
        while True:
            with self._lock:
                kept = self._idle.get(key)
                if not kept:
                    return None
                session = kept.pop()
            if session.still_good():
                self.reused += 1
                return session
            session.client.close()

    def give(self, key: tuple[Any, ...], session: _Session) -> None:
        now = self._clock()
        if session.opened_at is None:
            session.opened_at = now
        if now - session.opened_at >= self.max_age_s:
            session.close()
            return
        session.idle_since = now
        with self._lock:
            self._idle.setdefault(key, []).append(session)

    def sweep(self) -> None:
        """Close (QUIT) the connections idle too long."""
        now = self._clock()
        stale: list[_Session] = []
        with self._lock:
            for key, kept in list(self._idle.items()):
                fresh = [s for s in kept if now - s.idle_since < self.idle_s]
                stale += [s for s in kept if now - s.idle_since >= self.idle_s]
                self._idle[key] = fresh
        for session in stale:
            session.close()

    def close(self) -> None:
        with self._lock:
            kept = [s for sessions in self._idle.values() for s in sessions]
            self._idle.clear()
        for session in kept:
            session.close()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(kept) for kept in self._idle.values())


def _check(envelope_from: str, recipients: list[str], data: bytes) -> str:
    if not recipients:
        return "no recipients"
    bare = _BARE.search(data)
    if bare is not None:
        which = "CR" if bare.group() == b"\r" else "LF"
        return f"the data has a bare {which} at offset {bare.start()} (CRLF only)"
    for address in (envelope_from if envelope_from.strip() != "<>" else "", *recipients):
        if _BAD_ADDRESS.search(address) or len(address) > 256:
            return f"not a usable address: {address[:80]!r}"
    for recipient in recipients:
        if not recipient.strip():
            return "an empty recipient address"
    return ""


def _kind(code: int) -> OutcomeKind:
    return "deferred" if code < 500 else "failed"


def _outcome(kind: OutcomeKind, code: int | None, reply: bytes | str, session: _Session,
             reset: bool = False) -> DeliveryOutcome:
    if reset:
        session.reset()
    text = reply if isinstance(reply, str) else _line(code, reply)
    return DeliveryOutcome(kind, _one_line(text), code, session.results, session.tls)


def _line(code: int | None, reply: bytes) -> str:
    text = reply.decode("utf-8", "replace")
    return _one_line(text if code is None else f"{code} {text}")


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REPLY else text[: MAX_REPLY - 3] + "..."
