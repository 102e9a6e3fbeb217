"""aiosmtpd's SMTP protocol with our limits, and the listener on an asyncio loop we own (the
threaded Controller cannot bind port 0).

What the subclass adds to aiosmtpd 1.4.6: per-instance command size limits (its class-level
dict is shared by every session and grows with each EHLO), a cap on commands per session, an
inactivity timeout during DATA, no AUTH, and enhanced status codes on its fixed replies.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from ingest import metrics, replies
from ingest.handler import IngestHandler
from ingest.replies import enhance
from ingest.settings import IngestSettings

log = logging.getLogger(__name__)


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class GatewaySMTP(SMTP):
    def __init__(self, handler: IngestHandler, *, settings: IngestSettings,
                 tls_context: ssl.SSLContext | None, loop: asyncio.AbstractEventLoop,
                 sessions: set[GatewaySMTP]) -> None:
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
        self._commands_left = settings.max_commands
        self._in_data = False
        self._ehlo = False
        self._sessions = sessions
        self._line_too_long = str(replies.LINE_TOO_LONG.with_text(
            f"Line too long: limit {settings.max_line_length} octets with CRLF "
            "(RFC 5321 4.5.3.1.6)"))
        self._smtp_methods.pop("AUTH", None)
        self._smtp_methods = {name: self._counted(name, method)
                              for name, method in self._smtp_methods.items()}

    @property
    def in_data(self) -> bool:
        return self._in_data

    def _counted(self, name: str, method: Callable[[str], Awaitable[None]]
                 ) -> Callable[[str], Awaitable[None]]:
        # Mail-moving commands are bounded per message (max_recipients, the size limit); the
        # session limit is on the rest (NOOP, RSET, VRFY, HELP, EHLO ...), like Postfix's
        # smtpd_junk_command_limit, so a persistent connection may carry any number of messages.
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
        self._sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._sessions.discard(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        # RFC 5321 4.5.3.2.5: the DATA block timeout is an inactivity timeout.
        if self._in_data:
            self._reset_timeout(self._data_timeout)
        super().data_received(data)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and not (self._ehlo and status.startswith("250")):
            status = enhance(status, self._line_too_long)
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._ehlo = False

    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        self._reset_timeout(self._data_timeout)
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False
            if self.transport is not None:
                self._reset_timeout()


async def serve(settings: IngestSettings, handler: IngestHandler, stop: threading.Event,
                listening: Callable[[str, int], None]) -> None:
    loop = asyncio.get_running_loop()
    tls = (server_tls_context(settings.tls_cert, settings.tls_key)
           if settings.tls_cert is not None and settings.tls_key is not None else None)
    sessions: set[GatewaySMTP] = set()
    server = await loop.create_server(
        lambda: GatewaySMTP(handler, settings=settings, tls_context=tls, loop=loop,
                            sessions=sessions),
        host=settings.host, port=settings.port, reuse_address=True,
    )
    host, port = server.sockets[0].getsockname()[:2]
    listening(str(host), int(port))
    await asyncio.to_thread(stop.wait)
    server.close()
    await server.wait_closed()
    # Let messages whose data has arrived get their answer, then close every session.
    deadline = loop.time() + settings.commit_timeout_s
    while any(s.in_data for s in sessions) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for session in list(sessions):
        if session.transport is not None:
            session.transport.close()
    await asyncio.sleep(0)
