"""The SMTP listener on an asyncio loop we own (aiosmtpd's threaded Controller cannot bind
port 0): it binds `host:port`, or serves a worker's sockets made by its supervisor
(ingest/workers.py); it serves GatewaySMTP sessions (ingest/server.py) until stopped, then
drains (ingest/drain.py)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from katagate.eventlog.health import beating_task
from katagate.ingest import metrics
from katagate.ingest.data_budget import DataBudget
from katagate.ingest.drain import drain
from katagate.ingest.drain_policy import DrainState
from katagate.ingest.handler import IngestHandler
from katagate.ingest.server import GatewaySMTP
from katagate.ingest.sessions import SessionTable
from katagate.ingest.settings import IngestSettings
from katagate.ingest.shared_counts import SharedCounts


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve(settings: IngestSettings, handler: IngestHandler, stop: threading.Event,
                listening: Callable[[str, int], None], beat: Callable[[], object],
                draining: Callable[[int], None],
                listeners: Sequence[socket.socket] = (),
                shared: SharedCounts | None = None) -> None:
    """Serve until `stop`, then drain (ingest/drain.py); `draining` is told how many
    sessions are open when the drain starts (for /readyz), before a new connection is refused.
    `listeners`: a worker's sockets, made by its supervisor (ingest/workers.py), else
    `host:port` is bound here; `shared`: the session counts of every worker."""
    loop = asyncio.get_running_loop()
    tls = (server_tls_context(settings.tls_cert, settings.tls_key)
           if settings.tls_cert is not None and settings.tls_key is not None else None)
    sessions: set[GatewaySMTP] = set()
    table = SessionTable(settings.max_sessions, settings.max_sessions_per_client, shared)
    budget = DataBudget(settings.data_budget_bytes)
    drain_state = DrainState()
    metrics.DATA_BUDGET.set(budget.limit)
    metrics.DATA_HELD.set_function(lambda: budget.held)

    def session() -> GatewaySMTP:
        return GatewaySMTP(handler, settings=settings, tls_context=tls, loop=loop,
                           sessions=sessions, table=table, budget=budget, drain_state=drain_state)

    servers = ([await loop.create_server(session, sock=sock) for sock in listeners]
               if listeners else
               [await loop.create_server(session, host=settings.host, port=settings.port,
                                         reuse_address=True)])
    host, port = servers[0].sockets[0].getsockname()[:2]
    beating = asyncio.create_task(beating_task(beat))  # a session blocking the loop stops it
    listening(str(host), int(port))
    await asyncio.to_thread(stop.wait)
    draining(len(sessions))
    await drain(sessions, drain_state, timeout_s=settings.drain_timeout_s,
                commit_timeout_s=settings.commit_timeout_s)
    # The listener last: until now a sender is told to come back (421), not refused.
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()
    beating.cancel()
