"""Every stage's metrics listener (`metrics_host:metrics_port`): Prometheus' `/metrics`, and
`/healthz` and `/readyz` answered by `eventlog/health.py`; any other path is 404. Unauthenticated
and without mail data, so never on a stage's own port (`eventlog/listen.py`); loopback unless
set.

It lives in the stage's process, so no client may cost that process much: a connection is cut
`REQUEST_DEADLINE_S` after it opened (a client that sends its request slowly, or never) and
read no further than `MAX_REQUEST_BYTES`; at most `MAX_CONNECTIONS` are served at once (more
are closed at once, each being a thread), and at most `MAX_COLLECTIONS` /metrics collections
run at once (one stuck in a collector answers the next 503), so probes are answered while a
collection hangs."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.registry import Collector

from katagate.eventlog.health import PROBES, Health

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


REQUEST_DEADLINE_S = 10.0
MAX_CONNECTIONS = 32
MAX_REQUEST_BYTES = 16 * 1024  # a probe's or a scrape's request is a few hundred bytes
MAX_COLLECTIONS = 4  # two Prometheus replicas and a person, with room


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a probe left hanging never keeps the stage from exiting
    block_on_close = False
    deadline_s = REQUEST_DEADLINE_S
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: closed, no thread started
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # The deadline shuts the socket down, which ends a read or write blocked on it.
        timer = threading.Timer(self.deadline_s, _cut, args=(request,))
        timer.daemon = True
        timer.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            timer.cancel()
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client cut at its deadline or gone is not a traceback on the stage's stderr."""
        log.debug("metrics listener: a client's request ended early", exc_info=True)


def _cut(request: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed already
        request.shutdown(socket.SHUT_RDWR)


class _Threading6(_Threading):
    address_family = socket.AF_INET6


class _Capped:
    """A connection's input, ending after `budget` bytes: http.server would read 100 header
    lines of 64 KiB each, 6 MiB a connection, 200 MiB over MAX_CONNECTIONS."""

    def __init__(self, raw: Any, budget: int) -> None:
        self._raw = raw
        self._left = budget

    def _size(self, size: int | None) -> int:
        return self._left if size is None or size < 0 else min(size, self._left)

    def readline(self, size: int | None = -1) -> bytes:
        line: bytes = self._raw.readline(self._size(size)) if self._left > 0 else b""
        self._left -= len(line)
        return line

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._raw.read(self._size(size)) if self._left > 0 else b""
        self._left -= len(data)
        return data


class _Quiet(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.rfile = _Capped(self.rfile, MAX_REQUEST_BYTES)  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not log lines."""


def health_app(health: Health, registry: Collector = REGISTRY,
               max_collections: int = MAX_COLLECTIONS) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)
    collecting = threading.BoundedSemaphore(max_collections)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        probe = PROBES.get(path)
        if path == "/metrics":
            if not collecting.acquire(blocking=False):
                return _plain(start_response, "503 Service Unavailable",
                              b"a metrics collection is still running\n")
            try:
                return metrics(environ, start_response)  # type: ignore[no-any-return]
            finally:
                collecting.release()
        if probe is None:
            return _plain(start_response, "404 Not Found",
                          b"not found: /metrics, /healthz or /readyz\n")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b""]
        status, body = health.answer(probe)
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store")])
        return [data] if environ["REQUEST_METHOD"] == "GET" else [b""]

    return app


def _plain(start_response: StartResponse, status: str, text: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(text)))])
    return [text]


class HealthServer:
    """Bound and serving when made (port 0 picks a free one: `address`); `close` stops it."""

    def __init__(self, host: str, port: int, health: Health,
                 registry: Collector = REGISTRY, *, deadline_s: float = REQUEST_DEADLINE_S,
                 max_connections: int = MAX_CONNECTIONS,
                 max_collections: int = MAX_COLLECTIONS) -> None:
        six = ipaddress.ip_address(host).version == 6
        base = _Threading6 if six else _Threading
        limits = {"deadline_s": deadline_s, "max_connections": max_connections}
        listener: type[_Threading] = type("_Listener", (base,), limits)
        self._server = make_server(host, port, health_app(health, registry, max_collections),
                                   listener, handler_class=_Quiet)
        bound = self._server.server_address
        self.address = (str(bound[0]), int(bound[1]))
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics-health", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_health(host: str, port: int | None, health: Health,
                 registry: Collector = REGISTRY) -> HealthServer | None:
    """The listener when `metrics_port` is set, else None (nothing served)."""
    if port is None:
        return None
    server = HealthServer(host, port, health, registry)
    log.info("metrics and health on %s:%d (/metrics, /healthz, /readyz)", *server.address)
    return server
