"""The HTTPS server: threaded HTTP/1.1 (keep-alive) over pyOpenSSL connections.

Each accepted socket gets the TLS context of the current server key, so a rotated key is
served on new connections without a restart. The handshake runs in the connection's thread,
never in the accept loop.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import socket
import socketserver
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from OpenSSL import SSL

from katagate.kata_emulator.api import Api, BodyTooLarge, Peer, Request, Response, error
from katagate.kata_emulator.keys import spki_fingerprint
from katagate.kata_emulator.multipart import FormError
from katagate.kata_emulator.store import Store
from katagate.kata_emulator.tls import ServerContexts, TlsIO, peer_certificate, peer_pem
from katagate.kata_emulator.verdicts import RulesFile

log = logging.getLogger(__name__)
IDLE_TIMEOUT_S = 120.0
MAX_CHUNK_LINE = 1024


class KataServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: Api, contexts: ServerContexts) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.api, self.contexts = api, contexts
        super().__init__(address, KataHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (an unpinned client, a port scan) are routine: one line, no trace.
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, SSL.Error | OSError | ConnectionError):
            log.info("connection from %s ended: %r", client_address[0], exc)
        else:
            log.exception("connection from %s failed", client_address[0])


class KataHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kata-emulator"
    sys_version = ""
    server: KataServer

    def setup(self) -> None:
        sock: socket.socket = self.request
        sock.setblocking(False)
        conn = SSL.Connection(self.server.contexts.current(), sock)
        conn.set_accept_state()
        self.tls = TlsIO(conn, sock, IDLE_TIMEOUT_S)
        self.tls.handshake()
        cert = peer_certificate(conn)
        self.peer = Peer(self.client_address[0], spki_fingerprint(cert), peer_pem(cert))
        self.rfile = io.BufferedReader(self.tls, 65536)
        self.wfile = io.BufferedWriter(self.tls, 65536)
        self._body_pending = False

    def finish(self) -> None:
        with contextlib.suppress(OSError, SSL.Error):
            self.wfile.flush()
        self.tls.close_tls()

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if length is not None and not length.strip().isdigit():
            self.close_connection = True
            self._send(error(400, "bad Content-Length"))
            return
        self._body_pending = chunked or bool(length and int(length) > 0)
        request = Request(self.command, self.path, self.headers.get("Content-Type", ""),
                          self.peer)
        response = self.server.api.handle(request, self._read_body)
        if self._body_pending:
            self.close_connection = True  # an unread body cannot be skipped safely
        self._send(response)

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = self._read_chunked(limit)
        else:
            length = int(self.headers.get("Content-Length", "0").strip() or 0)
            if length > limit:
                raise BodyTooLarge
            data = self.rfile.read(length)
            if len(data) != length:
                raise ConnectionError("the client sent less than its Content-Length")
        self._body_pending = False
        return data

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(MAX_CHUNK_LINE)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise FormError("malformed chunked body") from None
            if size == 0:
                break
            if len(body) + size > limit:
                raise BodyTooLarge
            body += self.rfile.read(size)
            self.rfile.readline(MAX_CHUNK_LINE)
        while self.rfile.readline(MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return bytes(body)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # http.server's own refusals (bad request line, headers too long) as JSON too.
        self.close_connection = True
        with contextlib.suppress(OSError, SSL.Error):
            self._send(error(code, message or HTTPStatus(code).phrase))

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.client_address[0], format % args)


def make_server(state_dir: Path, host: str, port: int, rules: Path | None,
                seed: int | None = None) -> KataServer:
    store = Store(state_dir)
    api = Api(store, RulesFile(rules), rng=random.Random(seed))  # noqa: S311 - not secrets
    return KataServer((host, port), api, ServerContexts(state_dir))
