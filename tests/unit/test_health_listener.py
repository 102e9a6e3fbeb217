"""The metrics listener (eventlog/health_server.py) against hostile or broken clients, on real
loopback sockets: a client that never finishes its request is cut at the deadline, one that
sends endless headers is read no further than 16 KiB, many idle
connections cost at most MAX_CONNECTIONS threads, a /metrics collection stuck in a collector
leaves the probes answering, and a path that is not /metrics, /healthz or /readyz is 404 (so
a probe on a mistyped path is not always 200)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from katagate.eventlog.health import Health
from katagate.eventlog.health_server import HealthServer


def status(address: tuple[str, int], path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}",
                                    timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def ready_health() -> Health:
    health = Health()
    health.part("loop").ready()
    return health


def test_given_a_client_that_never_finishes_its_request_then_it_is_cut_at_the_deadline():
    server = HealthServer("127.0.0.1", 0, ready_health(), CollectorRegistry(), deadline_s=0.5)
    try:
        # Given a client that sends half a request line and waits (slowloris)
        with socket.create_connection(server.address, timeout=5) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            # When it waits for an answer, Then the listener closes it at the deadline
            assert client.recv(1024) == b""
            assert time.monotonic() - started < 3
    finally:
        server.close()


def test_given_a_request_with_endless_headers_then_reading_stops_at_16_kib_and_it_is_answered():
    server = HealthServer("127.0.0.1", 0, ready_health(), CollectorRegistry(), deadline_s=30)
    try:
        with socket.create_connection(server.address, timeout=3) as client:
            # Given a request whose header lines go on (64 KiB each, 100 allowed by http.server)
            client.sendall(b"GET /healthz HTTP/1.0\r\n")
            for _ in range(3):
                client.sendall(b"X-Filler: " + b"a" * 8000 + b"\r\n")
            # Then the listener stops reading at 16 KiB and answers, not waiting for the rest
            assert client.recv(64).startswith(b"HTTP/1.0 ")
    finally:
        server.close()


def test_given_many_idle_connections_then_threads_stay_bounded_and_they_are_closed():
    server = HealthServer("127.0.0.1", 0, ready_health(), CollectorRegistry(),
                          deadline_s=30, max_connections=4)
    before = threading.active_count()
    clients = [socket.create_connection(server.address, timeout=5) for _ in range(12)]
    try:
        time.sleep(0.5)
        # Then at most 4 are being served (a thread and a timer each); the rest were closed
        assert threading.active_count() - before <= 2 * 4
        closed = 0
        for client in clients[4:]:
            client.settimeout(2)
            closed += client.recv(1) == b""
        assert closed == 8
    finally:
        for client in clients:
            client.close()
        server.close()


class Stuck:
    """A collector that hangs until released (a scrape of a wedged subsystem)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.release.wait(20)
        yield GaugeMetricFamily("stuck", "a collector that hung", value=1)


def test_given_a_metrics_collection_stuck_then_probes_answer_and_more_scrapes_get_503():
    registry = CollectorRegistry()
    stuck = Stuck()
    registry.register(stuck)  # type: ignore[arg-type]
    server = HealthServer("127.0.0.1", 0, ready_health(), registry, max_collections=2)
    try:
        # Given two scrapes hanging in the collector
        hanging = [threading.Thread(target=status, args=(server.address, "/metrics"),
                                    daemon=True) for _ in range(2)]
        for thread in hanging:
            thread.start()
        time.sleep(0.5)
        # Then the next scrape is 503 at once, and the probes answer
        assert status(server.address, "/metrics") == 503
        assert status(server.address, "/healthz") == 200
        assert status(server.address, "/readyz") == 200
    finally:
        stuck.release.set()
        server.close()


def test_given_a_path_that_is_not_served_then_it_is_404_not_the_metrics():
    server = HealthServer("127.0.0.1", 0, ready_health(), CollectorRegistry())
    try:
        for path in ("/healthz/", "/healthz/../x", "/", "/x", "/metrics/"):
            assert (path, status(server.address, path)) == (path, 404)
        assert status(server.address, "/metrics?x=1") == 200
        assert status(server.address, "/readyz?x=1") == 200
    finally:
        server.close()
