"""The fault proxy itself, against a plain echo server on real sockets: each fault does what
the suite relies on it to do."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fault_proxy = FaultProxy(server.server_address[1]).start()
    yield fault_proxy
    fault_proxy.stop()
    server.shutdown()
    server.server_close()


def connect(proxy: FaultProxy, timeout_s: float = 2.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout_s)


def echo(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(65536)


def test_it_passes_bytes_both_ways(proxy):
    with connect(proxy) as sock:
        assert echo(sock, b"hello") == b"hello"


def test_latency_delays_each_direction(proxy):
    proxy.latency(0.2)
    with connect(proxy) as sock:
        began = time.monotonic()
        assert echo(sock) == b"ping"
        assert time.monotonic() - began >= 0.4


def test_a_stall_holds_the_bytes_until_healed(proxy):
    with connect(proxy, timeout_s=0.5) as sock:
        proxy.stall()
        sock.sendall(b"held")
        with pytest.raises(TimeoutError):
            sock.recv(100)
        proxy.heal()
        sock.settimeout(2)
        assert sock.recv(100) == b"held"


def test_half_open_swallows_everything_and_those_connections_stay_dead(proxy):
    with connect(proxy, timeout_s=0.5) as old:
        proxy.half_open()
        with connect(proxy, timeout_s=0.5) as during:
            for sock in (old, during):
                sock.sendall(b"anyone?")
                with pytest.raises(TimeoutError):
                    sock.recv(100)
            proxy.heal()
            with connect(proxy) as fresh:
                assert echo(fresh) == b"ping"
            old.sendall(b"still there?")
            with pytest.raises(TimeoutError):
                old.recv(100)


def test_refused_connections_are_reset_at_once(proxy):
    proxy.refuse()
    with pytest.raises(ConnectionResetError), connect(proxy) as sock:  # at connect or first read
        sock.recv(10)


def test_reset_sends_rst_to_every_open_connection(proxy):
    with connect(proxy) as sock:
        assert echo(sock) == b"ping"
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(100)
