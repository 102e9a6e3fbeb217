"""Who may read the projector's views, over real sockets against the real projector on a real
broker: a bearer token (made and revoked with `katagate projector token`), the Host header,
idle and slow clients cut at the timeout, the request limit, and the metrics on their own
listener."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from katagate.eventlog.settings import KafkaSettings
from katagate.projector.live import LiveProjection
from tests.integration.test_projector_live import request, run_cli, running

pytestmark = pytest.mark.kafka


def cli_token(monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings,
              capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert run_cli(monkeypatch, kafka, "token", *argv) == 0
    return capsys.readouterr().out.strip()


def test_a_view_needs_a_valid_token_and_healthz_does_not(
        kafka_settings: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "projector"
    with running(kafka_settings, state) as live:
        # No token: 401, a Bearer challenge, and a body naming the problem.
        status, headers, body = request(live, "/state/connection", token=None)
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert json.loads(body)["problem"] == "missing_token"
        assert "Authorization: Bearer" in json.loads(body)["error"]
        for path in ("/state/quarantine", "/state/counters", "/messages", "/status",
                     "/quarantine/messages", "/messages/MSG00000001", "/nowhere"):
            assert request(live, path, token=None)[0] == 401, path
        # A token made by the command: 200.
        token = cli_token(monkeypatch, kafka_settings, capsys, "create", "script",
                          "--state-dir", str(state))
        assert token.startswith("kgp_")
        assert token not in (state / "tokens.json").read_text()
        assert request(live, "/state/connection", token=token)[0] == 200
        assert "script" in cli_token(monkeypatch, kafka_settings, capsys, "list",
                                     "--state-dir", str(state))
        # Revoked: 401 from the next request on, the running projector told by nobody.
        cli_token(monkeypatch, kafka_settings, capsys, "revoke", "script",
                  "--state-dir", str(state))
        status, headers, body = request(live, "/state/connection", token=token)
        assert status == 401
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]
        assert json.loads(body) == {"error": "the token is unknown or revoked",
                                    "problem": "invalid_token"}
        # A token of another projector, or a broken header: 401 too.
        assert request(live, "/state/connection", token="kgp_" + "x" * 43)[0] == 401
        status, _, body = request(live, "/state/connection", token=None,
                                  headers={"Authorization": "Basic c2NyaXB0Og=="})
        assert (status, json.loads(body)["problem"]) == (401, "invalid_request")
        # Liveness and readiness need no token and say nothing about the mail.
        status, _, body = request(live, "/healthz", token=None)
        assert (status, json.loads(body)["status"]) == (200, "ok")
        assert set(json.loads(body)["checks"]) == {"projector"}
        assert request(live, "/readyz", token=None)[0] in (200, 503)


def test_a_host_that_is_not_the_projectors_is_misdirected_before_the_token(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    with running(kafka_settings, tmp_path / "projector") as live:
        assert live.address is not None
        port = live.address[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
            assert request(live, "/state/counters", headers={"Host": host})[0] == 200, host
        # A DNS-rebinding page asks by its own name: 421, whatever it sends.
        for token in ("", None):
            status, _, body = request(live, "/state/counters", token=token,
                                      headers={"Host": f"attacker.example:{port}"})
            assert status == 421
            assert "allowed_hosts" in json.loads(body)["error"]
        assert request(live, "/healthz", headers={"Host": "attacker.example"})[0] == 421
        assert raw_exchange(live, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(
            b"HTTP/1.1 421 ")
    # Configured names replace the loopback ones.
    with running(kafka_settings, tmp_path / "named", allowed_hosts=["views.example.net"]) as live:
        assert live.address is not None
        port = live.address[1]
        assert request(live, "/state/counters",
                       headers={"Host": f"views.example.net:{port}"})[0] == 200
        assert request(live, "/state/counters", headers={"Host": f"localhost:{port}"})[0] == 421


def raw_exchange(live: LiveProjection, data: bytes) -> bytes:
    assert live.address is not None
    with socket.create_connection(live.address, timeout=10) as client:
        client.sendall(data)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer


def test_200_idle_connections_do_not_stop_a_token_holder_and_are_cut_at_the_timeout(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    with running(kafka_settings, tmp_path / "projector", max_requests=2,
                 request_timeout_s=2.0) as live:
        assert live.address is not None
        idle = []
        for n in range(200):
            client = socket.create_connection(live.address, timeout=10)
            if n % 2:  # half of them begin a request and stop
                client.sendall(b"GET /state/counters HTTP/1.1\r\nHost: localh")
            idle.append(client)
        try:
            began = time.monotonic()
            for _ in range(3):
                assert request(live, "/state/counters")[0] == 200
            assert time.monotonic() - began < 2.0
            # Then each idle one is cut once it has sent no whole request for 2 s.
            for client in idle:
                client.settimeout(max(0.1, began + 8 - time.monotonic()))
                assert client.recv(1) == b""
            assert time.monotonic() - began < 8
        finally:
            for client in idle:
                client.close()


def test_a_slow_client_is_cut_at_the_timeout_however_it_trickles(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    with running(kafka_settings, tmp_path / "projector", request_timeout_s=1.0) as live:
        assert live.address is not None
        # A byte every 50 ms: each read waits far less than the timeout, the head never ends.
        head = b"GET /state/counters HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
        with socket.create_connection(live.address, timeout=10) as client:
            cut = cut_after(client, head, 0.05)
        assert cut is not None
        assert 0.9 < cut < 2.5


def cut_after(client: socket.socket, data: bytes, pause_s: float) -> float | None:
    """Seconds until the peer closes while `data` trickles in a byte at a time; None if not."""
    began = time.monotonic()
    client.setblocking(False)
    for byte in data:
        try:
            client.sendall(bytes([byte]))
            if client.recv(1) == b"":
                return time.monotonic() - began
        except BlockingIOError:
            pass  # open, nothing to read
        except ConnectionError:
            return time.monotonic() - began
        time.sleep(pause_s)
    return None


def test_over_the_request_limit_the_answer_is_503_at_once_with_retry_after(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    with running(kafka_settings, tmp_path / "projector", max_requests=1) as live:
        answers: list[tuple[float, int, dict[str, str]]] = []
        began = time.monotonic()

        def ask() -> None:
            status, headers, _ = request(live, "/state/counters")
            answers.append((time.monotonic() - began, status, headers))

        with live.lock:  # the one worker waits on the views' lock
            askers = [threading.Thread(target=ask) for _ in range(2)]
            for asker in askers:
                asker.start()
            deadline = time.monotonic() + 5
            while not answers and time.monotonic() < deadline:
                time.sleep(0.01)
            # One took the only place and waits; the other is answered at once.
            assert len(answers) == 1
            took, status, headers = answers[0]
            assert (status, headers["Retry-After"]) == (503, "1")
            assert took < 2
            # Liveness is answered while every worker is busy.
            assert request(live, "/healthz", token=None)[0] == 200
        for asker in askers:
            asker.join(10)
        assert [a[1] for a in answers] == [503, 200]


def test_over_the_connection_limit_a_new_connection_is_refused_at_once(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    with running(kafka_settings, tmp_path / "projector", max_connections=3) as live:
        assert live.address is not None
        held = [socket.create_connection(live.address, timeout=10) for _ in range(3)]
        try:
            time.sleep(0.2)  # accepted
            answer = raw_exchange(live, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503 ")
            assert b"max_connections" in answer
        finally:
            for client in held:
                client.close()
        time.sleep(0.2)
        assert request(live, "/healthz")[0] == 200


def test_metrics_are_served_on_their_own_listener_without_a_token(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    with running(kafka_settings, tmp_path / "projector", metrics_port=0) as live:
        assert live.metrics_address is not None
        assert live.metrics_address != live.address
        host, port = live.metrics_address
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
        assert "katagate_quarantine_limit_messages" in text
        assert "process_resident_memory_bytes" in text
        # No longer on the views' listener.
        assert request(live, "/metrics")[0] == 404
    with running(kafka_settings, tmp_path / "quiet") as live:
        assert live.metrics_address is None  # none unless asked for
