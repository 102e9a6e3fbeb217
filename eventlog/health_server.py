"""Every stage's metrics listener (`metrics_host:metrics_port`): Prometheus' `/metrics`, and
`/healthz` and `/readyz` answered by `eventlog/health.py`. Unauthenticated and without mail
data, so never on a stage's own port (`eventlog/listen.py`); loopback unless set."""

from __future__ import annotations

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


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a probe left hanging never keeps the stage from exiting


class _Threading6(_Threading):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not log lines."""


def health_app(health: Health, registry: Collector = REGISTRY) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        probe = PROBES.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
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


class HealthServer:
    """Bound and serving when made (port 0 picks a free one: `address`); `close` stops it."""

    def __init__(self, host: str, port: int, health: Health,
                 registry: Collector = REGISTRY) -> None:
        six = ipaddress.ip_address(host).version == 6
        self._server = make_server(host, port, health_app(health, registry),
                                   _Threading6 if six else _Threading, handler_class=_Quiet)
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
