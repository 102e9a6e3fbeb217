"""The sink's SMTP side: an aiosmtpd handler that stores what it gets, and two ways to run it.

`serve(...)` runs in the foreground until SIGINT/SIGTERM (the command line), then stops
gracefully: it stops listening, lets a session inside DATA store its message and answer, and
closes the others; a message stored but never answered would be delivered again by the
gateway's next start (a duplicate). `SinkServer` runs
in a background thread and, unlike aiosmtpd's threaded `Controller`, can listen on port 0 (a
free port, read back from `.port`) — for tests and embedding.
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from katagate.demo_sink.store import MessageStore

MAX_MESSAGE_BYTES = 256 * 1024 * 1024  # above the gateway's 200 MB per-message cap
# How long a stop waits for sessions inside DATA: under `katagate up`'s 10 s for the sink's
# tier (katagate/stop_tiers.py), by when the decider has stopped sending.
DATA_GRACE_S = 8.0


@dataclass(frozen=True)
class Faults:
    fail_rate: float = 0.0  # share of messages answered 451 after the data
    reject_rcpt: tuple[str, ...] = ()  # glob patterns (case-insensitive): 550 at RCPT
    seed: int | None = None  # for the --fail-rate draws

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError(f"fail rate must be in 0..1, not {self.fail_rate}")


class SinkHandler:
    """aiosmtpd handler: every recipient and message is accepted unless a fault says otherwise."""

    def __init__(self, store: MessageStore, faults: Faults = Faults(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.faults = faults
        self.clock = clock
        self._draws = random.Random(faults.seed)  # noqa: S311 (fault injection, not security)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        lowered = address.lower()
        if any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.faults.reject_rcpt):
            return f"550 5.1.1 <{address}>: recipient rejected (demo sink --reject-rcpt)"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.faults.fail_rate and self._draws.random() < self.faults.fail_rate:
            return "451 4.3.0 demo sink: temporary failure (--fail-rate)"
        sender = envelope.mail_from or ""
        name = await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.save(
                data=envelope.original_content or b"",
                envelope_from="" if sender == "<>" else sender,
                recipients=list(envelope.rcpt_tos),
                peer=_peer(session.peer),
                helo=session.host_name,
                received_at=self.clock(),
                mail_options=list(envelope.mail_options),
            ))
        return f"250 2.0.0 OK: stored as {name}"


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


class Sessions:
    """The open sessions, and whether the sink is stopping (then a session ends after DATA)."""

    def __init__(self) -> None:
        self.open: set[_SinkSMTP] = set()
        self.stopping = False

    def close_idle(self) -> None:
        for session in list(self.open):
            if not session.in_data:
                session.close()

    def in_data(self) -> bool:
        return any(session.in_data for session in self.open)


class _SinkSMTP(SMTP):
    """aiosmtpd's session, known to `Sessions`, telling whether it is inside DATA."""

    def __init__(self, sessions: Sessions, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions = sessions
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sessions.open.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sessions.open.discard(self)
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        self.in_data = True
        try:
            await super().smtp_DATA(arg)  # the message stored and answered
        finally:
            self.in_data = False
            if self.sessions.stopping:
                self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # what was answered is written out first


def _factory(handler: SinkHandler, sessions: Sessions) -> Callable[[], SMTP]:
    return lambda: _SinkSMTP(sessions, handler, hostname="demo-sink", enable_SMTPUTF8=True,
                             decode_data=False, data_size_limit=MAX_MESSAGE_BYTES, timeout=300)


def banner(host: str, port: int, directory: Path) -> str:
    return f"sink={host}:{port} dir={directory}"


def serve(host: str, port: int, directory: Path, faults: Faults = Faults(),
          out: Callable[[str], None] = print) -> None:
    """Listen until SIGINT or SIGTERM; `out` gets the banner line once listening."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = SinkHandler(MessageStore(directory), faults)
        sessions = Sessions()
        server = await loop.create_server(_factory(handler, sessions), host, port)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        bound = server.sockets[0].getsockname()[1]
        out(banner(host, bound, directory))
        await stop.wait()
        server.close()  # no new connections
        sessions.stopping = True
        sessions.close_idle()
        deadline = loop.time() + DATA_GRACE_S
        while sessions.in_data() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(sessions.open):
            session.close()
        await server.wait_closed()

    asyncio.run(main())


class SinkServer:
    """The sink on a background thread: `with SinkServer(dir) as sink: ... sink.port`."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults = Faults()) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self.handler = SinkHandler(MessageStore(directory), faults)
        self.sessions = Sessions()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    def start(self) -> SinkServer:
        self._server = self._loop.run_until_complete(
            self._loop.create_server(_factory(self.handler, self.sessions), self.host,
                                    self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-sink",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None or self._server is None:
            return
        server = self._server

        async def shutdown() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._thread = None

    def __enter__(self) -> SinkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__: Sequence[str] = ("Faults", "SinkHandler", "SinkServer", "banner", "serve")
