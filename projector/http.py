"""The projections over HTTP (stdlib `ThreadingHTTPServer`): canonical JSON bodies, the same
bytes `katagate projector replay` writes, and specific JSON errors naming what was wrong."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, get_args
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from projector import quarantine
from projector.canonical import document
from projector.live import LiveProjection
from projector.metrics import registry_for
from schemas import ActionReason, ScanState

log = logging.getLogger(__name__)

MESSAGE_ID = re.compile(r"^[A-Za-z0-9]{8,64}$")
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 1000, 100
FILTERS: dict[str, tuple[str, ...]] = {
    "action": ("deliver", "delete", "reject"),
    "reason": get_args(ActionReason),
    "state": (*get_args(ScanState), "response_timeout"),
    "outcome": ("delivered", "discarded", "ndr_sent", "ndr_suppressed", "delivery_failed"),
}
LIST_PARAMETERS = ("limit", "after", *FILTERS)


class BadRequest(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["error"])
        self.body = body


def _bad(parameter: str, problem: str, allowed: Any) -> BadRequest:
    return BadRequest({"error": f"parameter {parameter!r}: {problem}", "parameter": parameter,
                       "allowed": allowed})


def parse_listing(query: str, allowed: tuple[str, ...] = LIST_PARAMETERS) -> dict[str, Any]:
    """The /messages query, validated: limit, after, and the filters (of those `allowed`)."""
    values = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    for name, given in values.items():
        if name not in allowed:
            raise _bad(name, "unknown parameter", list(allowed))
        if len(given) != 1:
            raise _bad(name, "given more than once", "one value")
    asked: dict[str, Any] = {"limit": LIMIT_DEFAULT, "after": None}
    if "limit" in values:
        text = values["limit"][0]
        limits = f"an integer in {LIMIT_MIN}..{LIMIT_MAX}"
        if not text.isdigit() or not LIMIT_MIN <= int(text) <= LIMIT_MAX:
            raise _bad("limit", f"{text!r} is not {limits}", limits)
        asked["limit"] = int(text)
    if "after" in values:
        after = values["after"][0]
        if not MESSAGE_ID.match(after):
            raise _bad("after", f"{after!r} is not a message id", "8-64 letters and digits")
        asked["after"] = after
    for name, choices in FILTERS.items():
        if name in values:
            if values[name][0] not in choices:
                raise _bad(name, f"{values[name][0]!r} is not allowed", list(choices))
            asked[name] = values[name][0]
    return asked


def listing(live: LiveProjection, asked: dict[str, Any]) -> dict[str, Any]:
    """One page of message summaries in message id order; `next` is the cursor for `after`."""
    filters = {name: asked[name] for name in FILTERS if name in asked}
    with live.lock:
        page, more = live.projections.listing(asked["after"], asked["limit"], filters)
    return {"messages": page, "next": page[-1]["message_id"] if more else None}


def waiting(live: LiveProjection, asked: dict[str, Any]) -> dict[str, Any]:
    """One page of the messages waiting in the KATA Quarantine for a verdict."""
    with live.lock:
        page, more = quarantine.waiting(live.projections.quarantine, asked["after"],
                                        asked["limit"])
    return {"messages": page, "next": page[-1]["message_id"] if more else None}


def make_handler(live: LiveProjection) -> type[BaseHTTPRequestHandler]:
    registry = registry_for(live)
    routes: dict[str, Callable[[], bytes]] = {
        f"/state/{name}": (lambda name=name: _locked(live, name))  # type: ignore[misc]
        for name in ("connection", "quarantine", "counters")
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "katagate-projector"
        sys_version = ""

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                if url.path in routes:
                    self._send(HTTPStatus.OK, routes[url.path]())
                elif url.path == "/metrics":
                    self._send(HTTPStatus.OK, generate_latest(registry),
                               CONTENT_TYPE_LATEST)
                elif url.path == "/healthz":
                    self._send(HTTPStatus.OK, document(live.health()))
                elif url.path == "/quarantine/messages":
                    asked = parse_listing(url.query, ("limit", "after"))
                    self._send(HTTPStatus.OK, document(waiting(live, asked)))
                elif url.path == "/messages":
                    self._send(HTTPStatus.OK, document(listing(live, parse_listing(url.query))))
                elif url.path.startswith("/messages/"):
                    self._message(unquote(url.path.removeprefix("/messages/")))
                else:
                    self._error(HTTPStatus.NOT_FOUND, {"error": f"no such path {url.path!r}",
                                                       "path": url.path})
            except BadRequest as exc:
                self._error(HTTPStatus.BAD_REQUEST, exc.body)

        def _message(self, message_id: str) -> None:
            if not MESSAGE_ID.match(message_id):
                raise BadRequest({"error": f"{message_id!r} is not a message id",
                                  "message_id": message_id,
                                  "allowed": "8-64 letters and digits"})
            with live.lock:
                body = live.projections.message(message_id)
            if body is None:
                self._error(HTTPStatus.NOT_FOUND, {"error": f"unknown message id {message_id}",
                                                   "message_id": message_id})
            else:
                self._send(HTTPStatus.OK, document(body))

        def _error(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            self._send(status, document(body))

        def _send(self, status: HTTPStatus, body: bytes,
                  content_type: str = "application/json; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("projector http: " + format, *args)

    return Handler


def _locked(live: LiveProjection, name: str) -> bytes:
    with live.lock:
        return live.projections.document(name)


def serve(live: LiveProjection, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(live))
    server.daemon_threads = True
    return server
