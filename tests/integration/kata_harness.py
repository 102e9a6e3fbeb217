"""The KATA side of integration tests: the emulator as a real process on a real TLS port, and
the gateway's scanner pieces wired to a real broker."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.scanner.control_view import ControlView
from katagate.scanner.identity import load_or_create
from katagate.scanner.lifecycle import ConnectionService
from katagate.scanner.settings import ScannerSettings
from katagate.schemas import Event, KataSettings, KataSettingsChanged, ProducerRef
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")


def require_swaks() -> None:
    require_tool("swaks", package="swaks")


def openssl_fingerprint(pem_file: Path) -> str:
    """SHA-256 of the certificate's SubjectPublicKeyInfo, computed by openssl alone."""
    def run(args: list[str], data: bytes | None = None) -> bytes:
        return subprocess.run(["openssl", *args], input=data, capture_output=True,
                              check=True).stdout
    pub = run(["x509", "-in", str(pem_file), "-pubkey", "-noout"])
    der = run(["pkey", "-pubin", "-outform", "DER"], pub)
    digest = run(["dgst", "-sha256", "-binary"], der)
    return ":".join(f"{b:02X}" for b in digest)


class Emulator:
    """`python -m kata_emulator serve` on a free port, with a state folder of its own."""

    def __init__(self, state: Path, rules: Path | None = None, host: str = "127.0.0.1") -> None:
        self.state = state
        self.rules = rules
        self.host = host
        self.port = 0
        self.fingerprint = ""
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Emulator:
        command = [sys.executable, "-m", "kata_emulator", "serve", "--state", str(self.state),
                   "--port", str(self.port), "--host", self.host, "--log-level", "WARNING"]
        if self.rules:
            command += ["--rules", str(self.rules)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        line = lines.get(timeout=60)
        assert line.startswith("kata-emulator listening on"), line
        self.port = int(line.split("https://", 1)[1].split()[0].rsplit(":", 1)[1])
        self.fingerprint = line.rsplit("fingerprint=", 1)[1].strip()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "kata_emulator", *args, "--state", str(self.state)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def sensors(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = json.loads(self.cli("sensors", "list", "--json").stdout)
        return listed

    @property
    def key_file(self) -> Path:
        return self.state / "server.pem"


def publish(settings: KafkaSettings, topic: str, events: list[Event]) -> None:
    producer = TransactionalProducer(settings, f"test-publisher-{uuid.uuid4().hex[:8]}")
    producer.begin()
    producer.produce(Outgoing.event(topic, e) for e in events)
    producer.commit()
    producer.close()


def configure_kata(settings: KafkaSettings, port: int, version: int = 1,
                   address: str = "127.0.0.1", **extra: Any) -> None:
    kata = KataSettings(central_node_address=IPv4Address(address), central_node_port=port,
                        **extra)
    publish(settings, TopicNames(settings.topic_prefix).control, [KataSettingsChanged(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC),
        producer=ProducerRef(stage="admin", instance="test"), version=version, actor="test",
        settings=kata, changed=["central_node_address", "central_node_port"],
    )])


class Lifecycle:
    """A running ConnectionService (the lifecycle owner) in a thread of the test process."""

    def __init__(self, kafka: KafkaSettings, state_dir: Path, instance: str = "scanner-0",
                 **overrides: Any) -> None:
        self.scanner = ScannerSettings(state_dir=state_dir, instance_id=instance,
                                       recheck_s=0.3, request_timeout_s=5, **overrides)
        self.identity = load_or_create(self.scanner.sensor_dir)
        self.control = ControlView(kafka)
        self.service = ConnectionService(kafka, self.scanner, self.identity, self.control)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop_event,),
                                       daemon=True)

    def __enter__(self) -> Lifecycle:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=30)
        self.control.close()

    def state(self) -> str:
        return self.control.view.state

    def wait_state(self, state: str, timeout_s: float = 30.0) -> None:
        wait_for(lambda: self.state() == state, timeout_s,
                 f"connection state {state} (now {self.state()}: {self.control.view.detail})")


def env_without_kafka() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}


def inject_admitted(settings: KafkaSettings, message_id: str, raw: bytes,
                    timeout_s: int = 600, content_sha256: str | None = None) -> None:
    """What ingest and the admission stage write for an admitted message: the raw chunks and
    MessageReceived in one transaction, then QuarantineAdmitted."""
    from datetime import timedelta

    from katagate.eventlog.raw import CHUNK_BYTES, chunk
    from katagate.schemas import MessageReceived, QuarantineAdmitted, RawLocation

    names = TopicNames(settings.topic_prefix)
    now = datetime.now(UTC)
    ref = ProducerRef(stage="ingest", instance="test")
    chunked = chunk(names.raw, message_id, raw)
    producer = TransactionalProducer(settings, f"test-ingest-{uuid.uuid4().hex[:8]}")
    producer.begin()
    located = producer.produce_located(chunked.records)
    received = MessageReceived(
        event_id=uuid.uuid4(), occurred_at=now, producer=ref, message_id=message_id,
        envelope_from="sender@example.org", envelope_to=["rcpt@example.net"],
        client_ip="192.0.2.10", helo="mx.example.org", tls=False, size=chunked.size,
        sha256=chunked.sha256, subject="test", rule_id=None, settings_version=1,
        content_sha256=content_sha256,
        raw=RawLocation(topic=names.raw, partition=located[0][0],
                        offsets=[offset for _p, offset in located], chunk_bytes=CHUNK_BYTES),
    )
    producer.produce([Outgoing.event(names.mail, received)])
    producer.commit()
    producer.begin()
    producer.produce([Outgoing.event(names.mail, QuarantineAdmitted(
        event_id=uuid.uuid4(), occurred_at=now, producer=ProducerRef(stage="decider",
                                                                     instance="test"),
        message_id=message_id, size=chunked.size, rule_id=None, settings_version=1,
        response_timeout_s=timeout_s, deadline_at=now + timedelta(seconds=timeout_s),
        limit_bytes=1024 * 1024 * 1024, limit_messages=5000, bytes_in_use=chunked.size,
        messages_in_use=1,
    ))])
    producer.commit()
    producer.close()


class PlainHttps:
    """An HTTPS server that is no KATA: it answers every request `404 Not Found`, on loopback,
    with a self-signed certificate (made the way the sensor's is), and counts what it got."""

    def __init__(self, state: Path) -> None:
        import http.server
        import ssl

        from katagate.scanner.identity import load_or_create

        identity = load_or_create(state)
        self.fingerprint = identity.fingerprint
        self.requests: list[str] = []
        seen = self.requests

        class NotFound(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append(f"{self.command} {self.path}")
                body = b"<html><body>404 Not Found</body></html>"
                self.send_response(404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *_: object) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(identity.cert_path, identity.key_path)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PlainHttps:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
