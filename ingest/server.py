"""aiosmtpd's SMTP protocol with our limits (the listener that serves it: ingest/listener.py).

What the subclass adds to aiosmtpd 1.4.6: per-instance command size limits (its class-level
dict is shared by every session and grows with each EHLO), a cap on commands per session, caps
on sessions in all and per client, a budget of DATA bytes held across sessions, a DATA deadline
under a minimum rate, a 421 before a timeout closes the connection, the DATA body in one buffer
(not a bytearray per line), no AUTH, enhanced status codes on its fixed replies, the PROXY
header read with our policy and replies (ingest/proxy.py), XFORWARD (ingest/xforward.py), and
the 421 4.3.2 of a drain on stop (ingest/drain.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, syntax

from katagate.ingest import metrics, replies
from katagate.ingest.data_body import DataBody, Overflow
from katagate.ingest.data_budget import STEP, DataBudget, Reservation
from katagate.ingest.drain_policy import DrainState, draining_reply, refused_while_draining
from katagate.ingest.envelope import in_networks, path_address
from katagate.ingest.handler import IngestHandler
from katagate.ingest.idle_timer import MovedTimeout
from katagate.ingest.proxy import read_header
from katagate.ingest.replies import enhance
from katagate.ingest.sessions import SessionTable, client_key, next_data_deadline
from katagate.ingest.settings import IngestSettings

log = logging.getLogger(__name__)
PROXY_DRAIN_S = 0.5


class GatewaySMTP(MovedTimeout, SMTP):
    def __init__(self, handler: IngestHandler, *, settings: IngestSettings,
                 tls_context: ssl.SSLContext | None, loop: asyncio.AbstractEventLoop,
                 sessions: set[GatewaySMTP], table: SessionTable, budget: DataBudget,
                 drain_state: DrainState) -> None:
        # Read by SMTP.__init__, so set first. One more than the limit: the transparency dot
        # (RFC 5321 4.5.2); the exact limit is checked on the unstuffed content.
        self.line_length_limit = settings.max_line_length + 1
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        super().__init__(
            handler,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname=settings.hostname,
            ident="ESMTP katagate",
            tls_context=tls_context,
            require_starttls=settings.require_tls,
            timeout=settings.session_timeout_s,
            loop=loop,
        )
        self._data_timeout = settings.data_timeout_s
        self._min_data_rate = settings.min_data_rate
        self._data_deadline = 0.0
        self._table = table
        self._ipv6_prefix = settings.client_ipv6_prefix
        self._budget = budget
        self._drain = drain_state
        self._draining_reply = str(draining_reply(settings.hostname))
        # Behind a load balancer: the PROXY header names the client (ingest/proxy.py).
        self._proxy_hosts = (tuple(settings.proxy_protocol_hosts) if settings.proxy_protocol
                             else None)
        self._client: str | None = None  # counted in the table for this client
        self._admitted = False  # counted in the table (in all, at least)
        self._refused = False
        self._max_commands = self._commands_left = settings.max_commands
        self._in_data = False
        self._reading_data = False  # the rate deadline runs only while the body arrives
        self._greeting = False
        self._sessions = sessions
        self._line_too_long = str(replies.LINE_TOO_LONG.with_text(
            f"Line too long: limit {settings.max_line_length} octets with CRLF "
            "(RFC 5321 4.5.3.1.6)"))
        self._smtp_methods.pop("AUTH", None)
        self._smtp_methods = {name: self._drained(name, self._counted(name, method))
                              for name, method in self._smtp_methods.items()}

    @property
    def committing(self) -> bool:
        """The body is in and its checks and writes are under way: the answer is near."""
        return self._in_data and not self._reading_data

    def close_draining(self) -> None:
        """The drain's end (ingest/drain.py): 421 4.3.2 (RFC 5321 3.8), then close."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        metrics.REFUSED.labels("draining", "temporary").inc()
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(f"{self._draining_reply}\r\n".encode())
        transport.close()

    def _drained(self, name: str, method: Callable[[str], Awaitable[None]]
                 ) -> Callable[[str], Awaitable[None]]:
        # While draining, a transaction begun may finish; new work gets 421 and the
        # connection closes (ingest/drain_policy.py says which command is which).
        async def drained(arg: str) -> None:
            envelope = self.envelope
            in_transaction = envelope is not None and envelope.mail_from is not None
            if self._drain.draining and refused_while_draining(name, in_transaction):
                self.close_draining()
                return
            await method(arg)
        return drained

    def _counted(self, name: str, method: Callable[[str], Awaitable[None]]
                 ) -> Callable[[str], Awaitable[None]]:
        # Mail-moving commands are bounded per message (max_recipients, the size limit); the
        # session limit is on the rest (NOOP, RSET, VRFY, HELP, EHLO, XFORWARD ...), like
        # Postfix's smtpd_junk_command_limit, and like it counted afresh after each message
        # accepted (in _body), so a persistent connection may carry any number of messages:
        # Postfix's smtp client sends RSET and two XFORWARDs for each message on a cached one.
        if name in ("MAIL", "RCPT", "DATA", "QUIT"):
            return method

        async def counted(arg: str) -> None:
            self._commands_left -= 1
            if self._commands_left < 0:
                metrics.REFUSED.labels("too_many_commands", "temporary").inc()
                await self.push(str(replies.TOO_MANY_COMMANDS))
                if self.transport is not None:
                    self.transport.close()
                return
            await method(arg)
        return counted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is not None:
            # STARTTLS: aiosmtpd calls this again for the TLS transport, and makes a new session
            # whose peer is the socket's. The same connection: counted already, and its client
            # stays the one a PROXY header named (else every TLS session's client would be the
            # balancer, in events, relay checks and the Received field).
            named = self.session.peer if self.session is not None else None
            super().connection_made(transport)
            if named is not None and self.session is not None:
                self.session.peer = named
            return
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        # A balancer's session is counted for the client its header names (in all until then).
        # Any other peer is counted for itself: refused after a drain, it would otherwise hold
        # slots with no per-client cap, and one host could keep every balancer's client out.
        client: str | None = (None if self._proxy_hosts is not None
                              and in_networks(host, self._proxy_hosts)
                              else client_key(host, self._ipv6_prefix))
        # Draining: the listener stays open so that a sender is told (421, RFC 5321 3.8)
        # rather than refused at TCP level, and tries another gateway at once.
        if self._drain.draining:
            self._refuse(transport, self._draining_reply, "draining")
            return
        refusal = self._table.admit(client)
        if refusal is not None:
            self._refuse(transport, str(refusal), "too_many_sessions")
            return
        self._client, self._admitted = client, True
        self._sessions.add(self)
        super().connection_made(transport)

    def _refuse(self, transport: asyncio.BaseTransport, reply: str, reason: str) -> None:
        """Refused before aiosmtpd starts a session: no greeting, no task, one reply."""
        self._refused = True
        metrics.REFUSED.labels(reason, "temporary").inc()
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(f"{reply}\r\n".encode())
        transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._admitted:
            self._table.release(self._client)
            self._client, self._admitted = None, False
        self._sessions.discard(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._proxy_hosts is not None and not await self._proxied():
            return
        if self._drain.draining:  # admitted before the drain, its header read during it
            self.close_draining()
            return
        await super()._handle_client()

    async def _proxied(self) -> bool:
        """Read the PROXY header: the session's peer becomes the client it names, counted for
        it under the per-client cap. False: refused (with its reply) and closed."""
        session, hosts = self.session, self._proxy_hosts
        if session is None or hosts is None:
            return True
        peer = session.peer
        host, port = (str(peer[0]), peer[1]) if isinstance(peer, tuple) else ("unknown", 0)
        outcome = await read_header(self._reader, host, hosts)
        refusal = outcome.refusal
        if outcome.client is not None:
            key = client_key(outcome.client, self._ipv6_prefix)
            refusal = self._table.identify(key)
            if refusal is None:
                self._client = key
                session.peer = (outcome.client, outcome.port or port)  # type: ignore[assignment]
                return True
            self._admitted = False  # identify() stopped counting it
        if refusal is not None:
            metrics.REFUSED.labels("proxy_protocol" if outcome.client is None
                                   else "too_many_sessions", "temporary").inc()
            self._writer.write(f"{refusal}\r\n".encode())
            # What the peer sent unread at close would make it a reset, which may cost the
            # peer our reply: take in what it sent first (briefly; nothing of it is used).
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(self._reader.read(4096), PROXY_DRAIN_S)
        if self.transport is not None:
            self.transport.close()
        return False

    def data_received(self, data: bytes) -> None:
        if self._reading_data:
            now = time.monotonic()
            self._data_deadline = next_data_deadline(
                self._data_deadline, now, len(data), timeout_s=self._data_timeout,
                min_rate=self._min_data_rate)
            self._reset_timeout(max(self._data_deadline - now, 0.001))
        super().data_received(data)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command == "DATA":
            # The body is in: the rate no longer applies, and the commit is bounded by
            # commit_timeout_s, so the full timeout cannot cut a message being committed.
            self._reading_data = False
            self._reset_timeout(self._data_timeout)
        return await super()._call_handler_hook(command, *args)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # An address that is not the one the client wrote (ingest/envelope.py) is refused as
        # malformed, 553 5.1.3, before it can reach the envelope.
        return path_address(arg, self.local_part_limit)

    def _timeout_cb(self) -> None:
        # RFC 5321 4.2.1 lets a server close with 421; say which limit ended the session.
        reply = replies.DATA_TOO_SLOW.with_text(
            f"DATA too slow: under {self._min_data_rate} octets/s or idle for "
            f"{self._data_timeout:g} s, closing connection") if self._in_data else \
            replies.IDLE_TIMEOUT.with_text(
                f"Timeout exceeded: idle for {self._timeout_duration:g} s, closing connection")
        metrics.REFUSED.labels("timeout", "temporary").inc()
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(f"{reply}\r\n".encode())
        super()._timeout_cb()

    async def push(self, status: Any) -> None:
        # RFC 2034: the HELO and EHLO replies carry no enhanced code.
        if isinstance(status, str) and not (self._greeting and status.startswith("250")):
            status = enhance(status, self._line_too_long)
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._answer_greeting(super().smtp_EHLO(hostname))

    async def smtp_HELO(self, hostname: str) -> None:
        await self._answer_greeting(super().smtp_HELO(hostname))

    async def _answer_greeting(self, command: Awaitable[None]) -> None:
        self._greeting = True
        try:
            await command
        finally:
            self._greeting = False

    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, arg: str) -> None:
        await self.push(await self._call_handler_hook("XFORWARD", arg))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        self._reading_data = True
        self._data_deadline = time.monotonic() + self._data_timeout
        self._reset_timeout(self._data_timeout)
        try:
            await self._data(arg)
        finally:
            self._in_data = self._reading_data = False
            if self.transport is not None:
                self._reset_timeout()

    async def _data(self, arg: str) -> None:
        """aiosmtpd's DATA, with the body read into one buffer (ingest/data_body.py)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        if envelope is None or not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        reservation = Reservation(self._budget)
        try:
            if not reservation.cover(STEP):  # no room for a new body: refused before 354
                metrics.REFUSED.labels("data_budget", "temporary").inc()
                await self.push(str(replies.DATA_BUDGET_FULL))
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._body(envelope, reservation)
        finally:
            # The answer is out (or the connection gone): the bytes are no longer ours to hold.
            reservation.release()

    async def _body(self, envelope: Any, reservation: Reservation) -> None:
        body = DataBody(max_bytes=self.data_size_limit, max_line=self.line_length_limit,
                        reservation=reservation)
        try:
            await body.read(self._reader)
        except asyncio.CancelledError:
            # A lost connection cancels this task (aiosmtpd's eof_received): no EOF here.
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        if body.overflow is not Overflow.NONE:
            # Answered only once the data is complete (RFC 5321 4.2.5), as aiosmtpd does.
            if body.overflow is Overflow.OVER_BUDGET:
                metrics.REFUSED.labels("data_budget", "temporary").inc()
                await self.push(str(replies.DATA_BUDGET_FULL))
            else:
                await self.push("500 Line too long (see RFC5321 4.5.3.1.6)"
                                if body.overflow is Overflow.LINE_TOO_LONG
                                else "552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        content = body.content()
        del body
        envelope.content = envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        del content
        if status.startswith("250"):
            self._commands_left = self._max_commands
        await self.push(status)
