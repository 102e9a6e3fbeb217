"""Recipient verification by callout, like Postfix's `reject_unverified_recipient`: before a
recipient of a relay domain is accepted, the next hop is asked whether it would take it (an SMTP
probe with the null sender that stops after RCPT), so mail it would refuse is refused here, in
the session, and never bounced later to a sender who may be forged (backscatter).

- the next hop takes the recipient (2xx): accepted, and remembered for `verify_positive_ttl_s`;
- it refuses it (5xx): `550 5.1.1`, remembered for the shorter `verify_negative_ttl_s`, so a
  mailbox created meanwhile is not refused for long;
- it cannot be asked (refused connection, timeout, 4xx, a reply that is not SMTP): `450 4.1.1`,
  remembered not at all; the sender retries.

The probe uses STARTTLS when the next hop offers it (`verify_starttls`, as the decider's
`next_hop_starttls`: encrypted, not authenticated; `required` refuses to probe in plaintext).
At most `verify_concurrency` probes run at once, and concurrent RCPTs of one address share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Literal

from katagate.ingest import metrics, replies
from katagate.ingest.replies import Reply
from katagate.ingest.verify_cache import VerifyCache

log = logging.getLogger(__name__)

ProbeOutcome = Literal["exists", "unknown", "unverified"]
_LINE_LIMIT = 4096  # longest reply line we read from the next hop
_MAX_REPLY_LINES = 100


@dataclass(frozen=True)
class Probe:
    outcome: ProbeOutcome
    detail: str  # why, in a few fixed words and reply codes: it goes into our reply


StartTls = Literal["never", "opportunistic", "required"]


@dataclass(frozen=True)
class NextHop:
    host: str
    port: int
    helo: str
    timeout_s: float
    starttls: StartTls = "opportunistic"


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    """The code of one SMTP reply and its lines' texts; ValueError if it is not SMTP."""
    texts: list[bytes] = []
    for _ in range(_MAX_REPLY_LINES):
        line = await reader.readline()  # ValueError past the stream's limit
        if not line.endswith(b"\n"):
            raise ConnectionError("closed by the next hop")
        if len(line) < 4 or not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r"):
            raise ValueError("not an SMTP reply")
        texts.append(line[4:].strip())
        if line[3:4] != b"-":
            return int(line[:3]), texts
    raise ValueError("reply of too many lines")


async def _hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 helo: str) -> tuple[int, list[bytes]]:
    writer.write(f"EHLO {helo}\r\n".encode("ascii"))
    code, texts = await _reply(reader)
    if code in (500, 502):  # no ESMTP: plain HELO
        writer.write(f"HELO {helo}\r\n".encode("ascii"))
        code, texts = await _reply(reader)
    return code, texts


def _unverified_context() -> ssl.SSLContext:
    """Encryption without authentication, as opportunistic STARTTLS is (RFC 7435), and as the
    decider speaks to the same next hop (decider/smtp_out.py)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _ask(hop: NextHop, recipient: str) -> Probe:
    reader, writer = await asyncio.open_connection(hop.host, hop.port, limit=_LINE_LIMIT)
    try:
        if (code := (await _reply(reader))[0]) != 220:
            return Probe("unverified", f"greeting {code}")
        code, texts = await _hello(reader, writer, hop.helo)
        if code != 250:
            return Probe("unverified", f"EHLO answered {code}")
        offered = any(t.upper().split(b" ")[0] == b"STARTTLS" for t in texts[1:])
        if hop.starttls == "required" and not offered:
            return Probe("unverified", "TLS is required, but STARTTLS was not offered")
        if hop.starttls != "never" and offered:
            writer.write(b"STARTTLS\r\n")
            if (code := (await _reply(reader))[0]) != 220:
                return Probe("unverified", f"STARTTLS answered {code}")
            await writer.start_tls(_unverified_context(), server_hostname=hop.host)
            if (code := (await _hello(reader, writer, hop.helo))[0]) != 250:
                return Probe("unverified", f"EHLO answered {code}")
        writer.write(b"MAIL FROM:<>\r\n")  # the null sender: a probe must never cause a bounce
        if (code := (await _reply(reader))[0]) != 250:
            return Probe("unverified", f"MAIL FROM:<> answered {code}")
        # The address passed check_address and sender_routing: no control character, no CRLF.
        writer.write(f"RCPT TO:<{recipient}>\r\n".encode())
        code = (await _reply(reader))[0]
        writer.write(b"QUIT\r\n")
        if 200 <= code < 300:
            return Probe("exists", f"RCPT answered {code}")
        if 500 <= code < 600:
            return Probe("unknown", f"RCPT answered {code}")
        return Probe("unverified", f"RCPT answered {code}")
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def probe(hop: NextHop, recipient: str) -> Probe:
    """Ask the next hop about `recipient`; any failure to ask is `unverified`, never raised."""
    try:
        async with asyncio.timeout(hop.timeout_s):
            return await _ask(hop, recipient)
    except TimeoutError:
        return Probe("unverified", f"no answer within {hop.timeout_s:g} s")
    except ConnectionRefusedError:
        return Probe("unverified", "connection refused")
    except ssl.SSLError as exc:
        log.warning("recipient verification: TLS with the next hop failed: %s", exc)
        return Probe("unverified", "TLS with the next hop failed")
    except (OSError, ValueError) as exc:  # ConnectionError included; ValueError: not SMTP
        log.warning("recipient verification failed: %s", exc)
        return Probe("unverified", "the next hop's answer was broken")


class RecipientVerifier:
    """The cache in front of the probe; `check` gives the reply that refuses, or None."""

    def __init__(self, hop: NextHop, cache: VerifyCache, concurrency: int) -> None:
        self._hop = hop
        self._cache = cache
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: dict[str, asyncio.Future[Probe]] = {}

    async def check(self, recipient: str) -> Reply | None:
        known = self._cache.get(recipient, time.monotonic())
        if known is None:
            result = await self._shared_probe(recipient)
            outcome: ProbeOutcome = result.outcome
            metrics.VERIFICATIONS.labels(outcome, "probe").inc()
        else:
            result = Probe("exists" if known else "unknown", "remembered")
            outcome = result.outcome
            metrics.VERIFICATIONS.labels(outcome, "cache").inc()
        if outcome == "exists":
            return None
        if outcome == "unknown":
            return replies.UNKNOWN_RECIPIENT.with_text(
                f"<{recipient}>: Recipient address rejected: undeliverable address: "
                f"the next hop does not know it ({result.detail})")
        return replies.UNVERIFIED_RECIPIENT.with_text(
            f"<{recipient}>: Recipient address rejected: unverified address: the next hop "
            f"could not be asked ({result.detail}); try again later")

    async def _shared_probe(self, recipient: str) -> Probe:
        key = recipient.casefold()
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._probe(recipient))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: a session that goes away does not cancel the probe others wait for.
        return await asyncio.shield(pending)

    async def _probe(self, recipient: str) -> Probe:
        try:  # waiting for a slot is bounded too: a flood of probes gets 450s, not a queue
            async with asyncio.timeout(self._hop.timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            return Probe("unverified", "too many verifications at once")
        try:
            result = await probe(self._hop, recipient)
        finally:
            self._slots.release()
        if result.outcome != "unverified":
            self._cache.put(recipient, result.outcome == "exists", time.monotonic())
        return result
