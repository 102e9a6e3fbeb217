"""Mutual TLS with pyOpenSSL: any client certificate is accepted at the TLS layer.

The stdlib `ssl` module has no verify callback, so it cannot let an unknown self-signed sensor
through to become a pending integration request. Authorization happens above, on the
certificate's fingerprint. `TlsIO` adapts a non-blocking pyOpenSSL connection to the file
objects `http.server` reads and writes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import select
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from katagate.kata_emulator.keys import key_path, load_server_key

T = TypeVar("T")

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer


def _accept_any(conn: SSL.Connection, cert: object, errnum: int, depth: int, ok: int) -> bool:
    return True  # identity is decided by the API, on the SPKI fingerprint


class ServerContexts:
    """The TLS context for the current server key; rebuilt when `rotate-key` replaces it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._context: SSL.Context | None = None
        self.fingerprint = ""
        self.current()

    def current(self) -> SSL.Context:
        """Checked on every accept: a stat call, and a reload only when the file changed."""
        with self._lock:
            path = key_path(self.state_dir)
            try:
                info = os.stat(path)
                stamp: tuple[int, int] | None = (info.st_ino, info.st_mtime_ns)
            except FileNotFoundError:
                stamp = None
            if self._context is None or stamp != self._stamp:
                server_key = load_server_key(self.state_dir)
                self._context = _context(server_key.key, server_key.cert)
                self.fingerprint = server_key.fingerprint
                info = os.stat(path)
                self._stamp = (info.st_ino, info.st_mtime_ns)
            return self._context


def _context(key: object, cert: x509.Certificate) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate(cert)
    context.use_privatekey(key)  # type: ignore[arg-type]
    context.check_privatekey()
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept_any)
    context.set_session_id(b"kata-emulator")  # needed for resumption when verifying peers
    return context


def peer_certificate(conn: SSL.Connection) -> x509.Certificate:
    cert = conn.get_peer_certificate(as_cryptography=True)
    if cert is None:
        raise ConnectionError("no client certificate")
    return cert


def peer_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode("ascii")


class TlsIO(io.RawIOBase):
    """Blocking reads and writes over a non-blocking TLS connection, with an idle timeout."""

    def __init__(self, conn: SSL.Connection, sock: socket.socket, timeout: float) -> None:
        self.conn, self.sock, self.timeout = conn, sock, timeout

    def handshake(self) -> None:
        self._retry(self.conn.do_handshake)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        target = memoryview(buffer).cast("B")
        try:
            data: bytes = self._retry(lambda: self.conn.recv(len(target)))
        except SSL.ZeroReturnError:
            return 0
        except SSL.SysCallError as exc:
            if exc.args and exc.args[0] == -1:  # the peer closed without close_notify
                return 0
            raise ConnectionResetError(str(exc)) from None
        target[: len(data)] = data
        return len(data)

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            sent: int = self._retry(functools.partial(self.conn.send, view))
            view = view[sent:]
        return total

    def close_tls(self) -> None:
        with contextlib.suppress(SSL.Error, OSError):
            self.conn.shutdown()

    def _retry(self, call: Callable[[], T]) -> T:
        """Run `call`, waiting on the socket while OpenSSL wants to read or write."""
        while True:
            try:
                return call()
            except SSL.WantReadError:
                self._wait(select.POLLIN)
            except SSL.WantWriteError:
                self._wait(select.POLLOUT)

    def _wait(self, events: int) -> None:
        poller = select.poll()
        poller.register(self.sock.fileno(), events)
        if not poller.poll(self.timeout * 1000):
            raise TimeoutError(f"no progress on the TLS connection for {self.timeout:g} s")
