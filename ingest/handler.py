"""The aiosmtpd handler: maps each SMTP command to the pure policy and the policy's answer to
a reply line. The only waiting it does is for the writes that make a `250` true."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from katagate.ingest import metrics, replies, xforward
from katagate.ingest.content import check_content
from katagate.ingest.envelope import (
    check_address,
    client_text,
    domain_of,
    in_networks,
    recipient_limit_reached,
)
from katagate.ingest.ids import ENTROPY_BYTES, message_id
from katagate.ingest.received import Accepted, Copy, sender_of
from katagate.ingest.replies import Reply
from katagate.ingest.settings import IngestSettings
from katagate.ingest.split import copy_ids, queued_as, recipient_groups
from katagate.ingest.subject import check_subject_fields, decode_subject
from katagate.ingest.trace import check_hops, received_field
from katagate.ingest.unavailable import Usage, tempfail
from katagate.ingest.write_state import Outcome
from katagate.ingest.writer_pool import Writer
from katagate.ingest.xforward import Client, XForwardError, client_of
from katagate.schemas import ControlState, match_rule
from katagate.schemas.raw_mail import header_end

log = logging.getLogger(__name__)

_REASONS: dict[tuple[int, str], str] = {
    (replies.RELAY_DENIED.code, replies.RELAY_DENIED.enhanced): "relay_denied",
    (replies.TOO_MANY_RECIPIENTS.code, replies.TOO_MANY_RECIPIENTS.enhanced):
        "too_many_recipients",
    (replies.BARE_NEWLINE.code, replies.BARE_NEWLINE.enhanced): "bare_newline",
    (replies.LINE_TOO_LONG.code, replies.LINE_TOO_LONG.enhanced): "line_too_long",
    (replies.TOO_LARGE.code, replies.TOO_LARGE.enhanced): "too_large",
    (replies.SUBJECT_FIELDS.code, replies.SUBJECT_FIELDS.enhanced): "untaggable_headers",
    (replies.TOO_MANY_HOPS.code, replies.TOO_MANY_HOPS.enhanced): "too_many_hops",
    (replies.UNKNOWN_RECIPIENT.code, replies.UNKNOWN_RECIPIENT.enhanced): "unknown_recipient",
    (replies.UNVERIFIED_RECIPIENT.code, replies.UNVERIFIED_RECIPIENT.enhanced):
        "unverified_recipient",
    (replies.KATA_NOT_CONNECTED.code, replies.KATA_NOT_CONNECTED.enhanced): "kata_unavailable",
    (501, replies.SENDER_TOO_LONG.enhanced): "address_too_long",
    (501, replies.RECIPIENT_TOO_LONG.enhanced): "address_too_long",
    (replies.XFORWARD_DENIED.code, replies.XFORWARD_DENIED.enhanced): "xforward",
    (replies.XFORWARD_SYNTAX.code, replies.XFORWARD_SYNTAX.enhanced): "xforward",
    (replies.XFORWARD_IN_TRANSACTION.code, replies.XFORWARD_IN_TRANSACTION.enhanced): "xforward",
}


def refuse(reply: Reply) -> str:
    reason = _REASONS.get((reply.code, reply.enhanced), "bad_address")
    metrics.REFUSED.labels(reason, reply.kind).inc()
    return str(reply)


def _valid_helo(name: str) -> bool:
    return 0 < len(name) <= 255 and all(0x20 < ord(c) < 0x7F for c in name)


INLINE_INSPECT_BYTES = 256 * 1024
# The subject check reads the header section line by line, in Python: 256 KiB of short header
# lines cost about 70 ms, too long to stop the event loop for. A section that ends within 16 KiB
# (any honest one) costs well under a millisecond.
INLINE_HEADER_BYTES = 16 * 1024


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inline(data: bytes) -> bool:
    """Whether DATA's checks are cheap enough to run on the event loop."""
    return len(data) <= INLINE_INSPECT_BYTES and header_end(data, INLINE_HEADER_BYTES) is not None


@dataclass(frozen=True)
class Inspected:
    refusal: Reply | None
    subject: str | None


def inspect(data: bytes, settings: IngestSettings) -> Inspected:
    refusal = (check_content(data, settings.content_limits()) or check_subject_fields(data)
               or check_hops(data, settings.hop_count_limit))
    return Inspected(refusal, None if refusal else decode_subject(data))


def reverse_name(ip: str) -> str | None:
    """The client's PTR name, or None (none, or the resolver failed)."""
    try:
        return socket.gethostbyaddr(ip)[0]
    except (OSError, UnicodeError):
        return None


class IngestHandler:
    def __init__(self, settings: IngestSettings, control: Callable[[], ControlState],
                 writer: Writer, usage: Callable[[], Usage] = Usage) -> None:
        self._settings = settings
        self._limits = settings.address_limits()
        self._relay = settings.relay_policy()
        self._recipients = settings.recipient_table()
        self._verifier = settings.recipient_verifier()
        self._control = control
        self._writer = writer
        self._usage = usage  # the KATA Quarantine's, for on_unavailable = tempfail
        # Its own threads: a slow resolver never holds up DATA's checks (asyncio.to_thread).
        self._resolver = (ThreadPoolExecutor(max_workers=4, thread_name_prefix="ingest-rdns")
                          if settings.reverse_dns else None)
        self._lookups = 0  # submitted and not done

    def close(self) -> None:
        if self._resolver is not None:
            self._resolver.shutdown(wait=False, cancel_futures=True)

    def _look_up(self, session: Any) -> None:
        """Start the client's reverse DNS lookup, once per session; none while as many wait
        as sessions may be open (a slow resolver and clients that come and go: `unknown`)."""
        if (self._resolver is None or getattr(session, "rdns", None) is not None
                or self._lookups >= self._settings.max_sessions):
            return
        self._lookups += 1
        lookup = asyncio.get_running_loop().run_in_executor(
            self._resolver, reverse_name, client_text(session.peer[0]))
        lookup.add_done_callback(self._looked_up)
        session.rdns = lookup

    def _looked_up(self, _lookup: object) -> None:
        self._lookups -= 1  # on the event loop, as the count's increment

    @staticmethod
    def _rdns_of(session: Any) -> str | None:
        lookup = getattr(session, "rdns", None)
        if lookup is None or not lookup.done() or lookup.cancelled():
            return None
        name: str | None = lookup.result()
        return name

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        if not _valid_helo(hostname):
            metrics.REFUSED.labels("bad_helo", "permanent").inc()
            return [str(replies.BAD_HELO)]
        session.host_name = hostname
        self._look_up(session)
        # No AUTH: this is a relay for the domains and networks configured, not a submission
        # server. Enhanced status codes are in every reply (RFC 2034).
        kept = [line for line in responses[:-1] if not line.startswith("250-AUTH")]
        offered = [xforward.EHLO_LINE] if self._trusts_xforward(session) else []
        return [*kept, *offered, "250-ENHANCEDSTATUSCODES", responses[-1]]

    def _trusts_xforward(self, session: Any) -> bool:
        # The peer as known after a PROXY header, as Postfix checks the client it was told of.
        return in_networks(str(session.peer[0]), self._settings.xforward_hosts)

    async def handle_XFORWARD(self, server: Any, session: Any, envelope: Any,
                              arg: str | None) -> str:
        """Attributes for the next mail transaction, kept on its envelope (ingest/xforward.py).
        Authorization first, so a client that may not use it learns nothing more."""
        if not self._trusts_xforward(session):
            return refuse(replies.XFORWARD_DENIED)
        if session.host_name is None:
            return str(replies.XFORWARD_BEFORE_HELO)
        if envelope.mail_from is not None:
            return refuse(replies.XFORWARD_IN_TRANSACTION)
        try:
            attributes = xforward.parse(arg)
        except XForwardError as exc:
            return refuse(exc.reply)
        envelope.xforward = xforward.update(getattr(envelope, "xforward", None), attributes)
        return str(replies.OK)

    def _client(self, session: Any, envelope: Any) -> Client:
        return client_of(getattr(envelope, "xforward", None), peer=self._connected(session),
                         helo=session.host_name or "", rdns=self._rdns_of(session))

    @staticmethod
    def _connected(session: Any) -> str:
        """The client connected to us (after a PROXY header), never one XFORWARD names: that
        decides relaying. An upstream MTA has decided it already (for its mynetworks, its SASL
        users, its own mail), so trusting its XFORWARD must not mean letting it, or any other
        process on an xforward host, relay by naming a client in relay_networks. Postfix uses
        XFORWARD for logging only, too."""
        return client_text(session.peer[0])

    async def handle_HELO(self, server: Any, session: Any, envelope: Any, hostname: str) -> str:
        if not _valid_helo(hostname):
            metrics.REFUSED.labels("bad_helo", "permanent").inc()
            return str(replies.BAD_HELO)
        session.host_name = hostname
        self._look_up(session)
        return f"250 {server.hostname}"

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        refusal = check_address(address, self._limits, sender=True)
        if refusal:
            return refuse(refusal)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return str(replies.SENDER_OK)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        refusal = (recipient_limit_reached(envelope.rcpt_tos, self._settings.max_recipients)
                   or check_address(address, self._limits, sender=False)
                   or self._relay.decide(self._connected(session), address)
                   or await self._verify(address)
                   or self._unavailable(envelope.mail_from, [address], 0))
        if refusal:
            return refuse(refusal)
        if address not in envelope.rcpt_tos:  # a repeated recipient gets one copy
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return str(replies.RECIPIENT_OK)

    async def _verify(self, recipient: str) -> Reply | None:
        """Whether a relay domain's recipient exists: the table first, then the next hop.
        Recipients of other domains (relayed for a relay network) are the next hop's business."""
        if not self._relay.is_relay_domain(domain_of(recipient)):
            return None
        refusal = self._recipients.check(recipient)
        if refusal is None and self._verifier is not None:
            refusal = await self._verifier.check(recipient)
        return refusal

    def _unavailable(self, mail_from: str, recipients: list[str], size: int) -> Reply | None:
        """451 4.7.0 for mail whose rule says tempfail while KATA cannot take it: at RCPT for
        each recipient under its own rule, and again at the end of DATA for the whole message
        under its rule, with its size (the connection may have gone meanwhile)."""
        state = self._control()
        rule = match_rule(state, sender_of(mail_from), recipients)
        return tempfail(state, rule, self._usage(), size)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        metrics.RECEIVED.inc()
        data: bytes = envelope.original_content or b""
        # A 36 MiB message takes tens of milliseconds to scan: off the event loop. A small one
        # takes microseconds, less than the hop to a thread.
        inspected = (inspect(data, self._settings) if inline(data)
                     else await asyncio.to_thread(inspect, data, self._settings))
        if inspected.refusal:
            return refuse(inspected.refusal)
        # The verdict cache's key, over the bytes exactly as the client sent them: computed
        # here, before anything of the gateway's own (a trace field) is added to `data`
        # (docs/decisions/0003-verdict-cache-content-key.md).
        content_sha256 = (hashlib.sha256(data).hexdigest() if inline(data)
                          else await asyncio.to_thread(_sha256, data))
        sender = sender_of(envelope.mail_from)
        recipients = list(envelope.rcpt_tos)
        state = self._control()
        groups = recipient_groups(state, sender, recipients)
        # tempfail is asked again at the end of DATA (the connection may have gone since RCPT),
        # for each copy under its own rule: one copy KATA cannot take refuses the message.
        for group in groups:
            refusal = tempfail(state, state.rule(group.rule_id), self._usage(), len(data))
            if refusal:
                return refuse(refusal)
        first = message_id(time.time_ns() // 1_000_000, secrets.token_bytes(ENTROPY_BYTES))
        ids = copy_ids(first, len(groups))
        now, client, tls = datetime.now(UTC), self._client(session, envelope), (
            session.ssl is not None)
        accepted = Accepted(
            message_id=first,
            event_id=uuid.uuid4(),
            occurred_at=now,
            envelope_from=sender,
            envelope_to=tuple(recipients),
            client_ip=client.ip,
            helo=client.helo,
            tls=tls,
            subject=inspected.subject,
            rule_id=groups[0].rule_id,
            settings_version=state.version,
            data=data,
            content_sha256=content_sha256,
            copies=() if len(groups) == 1 else tuple(
                Copy(i, uuid.uuid4(), g.rule_id, g.recipients) for i, g in zip(
                    ids, groups, strict=True)),
            # Stored in front of the client's bytes (`data` stays as the client sent it).
            trace=received_field(
                helo=client.helo, rdns=client.name, client_ip=client.ip,
                gateway=self._settings.hostname, extended=session.extended_smtp, tls=tls,
                message_id=first, recipients=tuple(recipients), at=now,
                forwarded_protocol=client.protocol),
        )
        bound = self._settings.commit_timeout_s
        future = self._writer.submit(accepted, bound)
        try:
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), bound)
        except TimeoutError:
            outcome = Outcome.TIMEOUT
        if outcome is not Outcome.DURABLE:
            metrics.REFUSED.labels(outcome.value, "temporary").inc()
            return str(replies.KAFKA_UNAVAILABLE)
        metrics.ACCEPTED.inc()
        metrics.ACCEPTED_BYTES.inc(len(data))
        # At debug: the mail log's `ingest` line (written once the events were acknowledged)
        # says the same at info; two lines a message were 9 % of ingest's time under load.
        log.debug("accepted %s from %s: %d octets, %d recipients%s", accepted.message_id,
                  accepted.client_ip, len(data), len(recipients),
                  f", split by rule into {' '.join(ids)}" if len(ids) > 1 else "")
        queued = replies.QUEUED
        return str(queued.with_text(queued.text.format(message_id=queued_as(ids))))

    async def handle_exception(self, error: Exception) -> str:
        # A bug of ours must cost the sender a retry, never a message (nor leak details).
        log.exception("SMTP session error", exc_info=error)
        return str(replies.KAFKA_UNAVAILABLE)
