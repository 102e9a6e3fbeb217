"""What the ingest integration tests share (this module holds no tests): the stage running in
a thread (or as its own process) on a real broker, a raw-socket SMTP client, the log as
witness, a self-signed cert."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from katagate.eventlog.raw import RawReader
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.ingest.run import run_ingest
from katagate.ingest.settings import IngestSettings
from katagate.schemas import MessageReceived, ProducerRef, Rule, RuleCreated, decode_event
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import publish

RELAY_DOMAIN = "example.net"


# Tests leave sessions open as they stop ingest: the drain's bound (30 s by default) would be
# waited for at each stop. Its own tests set it.
DRAIN_TIMEOUT_S = 2.0


def ingest_settings(**overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {"port": 0, "hostname": "mx.test", "relay_domains": [RELAY_DOMAIN],
                              "instance_id": f"test-{uuid.uuid4().hex[:8]}",
                              "drain_timeout_s": DRAIN_TIMEOUT_S, **overrides}
    return IngestSettings(**values)


class Ingest:
    """`run_ingest` in a thread; `with Ingest(kafka) as ingest:` waits until it listens."""

    def __init__(self, kafka: KafkaSettings, **overrides: Any) -> None:
        self.kafka = kafka
        self.settings = ingest_settings(**overrides)
        self.stop = threading.Event()
        self.listening = threading.Event()
        self.host, self.port = "", 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            run_ingest(self.kafka, self.settings, self.stop, self._ready)
        except BaseException as exc:
            self.error = exc
            self.listening.set()

    def _ready(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.listening.set()

    def __enter__(self) -> Ingest:
        self.thread.start()
        assert self.listening.wait(60), "ingest did not start listening"
        if self.error:
            raise self.error
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "ingest did not stop"
        if self.error:
            raise self.error

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    """What the server sends until `marker` has come, or it closes."""
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def first_line(sock: socket.socket) -> bytes:
    return read_until(sock, b"\r\n").split(b"\r\n", 1)[0]


def received(kafka: KafkaSettings) -> list[MessageReceived]:
    records = read_all(kafka, TopicNames(kafka.topic_prefix).mail)
    events = [decode_event(r.value or b"") for r in records]
    assert all(isinstance(e, MessageReceived) for e in events)
    return [e for e in events if isinstance(e, MessageReceived)]


def raw_of(kafka: KafkaSettings, event: MessageReceived) -> bytes:
    reader = RawReader(kafka)
    try:
        return reader.read(event.raw.topic, event.raw.partition, event.raw.offsets,
                           event.message_id, event.sha256)
    finally:
        reader.close()


def raw_records(kafka: KafkaSettings) -> int:
    return len(read_all(kafka, TopicNames(kafka.topic_prefix).raw))


def publish_rule(kafka: KafkaSettings, rule_id: str, version: int, *, position: int = 1,
                 senders: list[str] | None = None, recipients: list[str] | None = None) -> None:
    publish(kafka, TopicNames(kafka.topic_prefix).control, [RuleCreated(
        event_id=uuid.uuid4(), occurred_at=dt.datetime.now(dt.UTC),
        producer=ProducerRef(stage="admin", instance="test"), version=version, actor="test",
        rule=Rule(rule_id=rule_id, name=rule_id, position=position, senders=senders or ["*"],
                  recipients=recipients or ["*"]),
    )])


class RawClient:
    """SMTP over a bare socket: exact bytes out, reply lines in."""

    def __init__(self, address: tuple[str, int], timeout: float = 20.0) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(address, timeout)
        self.buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unread {self.buffer!r}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> str:
        """One reply, all its lines joined with newlines."""
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return "\n".join(line.decode("ascii", "replace") for line in lines)

    def cmd(self, line: bytes | str) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def envelope(self, sender: str = "alice@example.org",
                 recipients: tuple[str, ...] = ("bob@example.net",)) -> None:
        assert self.cmd("EHLO client.test").startswith("250")
        assert self.cmd(f"MAIL FROM:<{sender}>").startswith("250")
        for recipient in recipients:
            assert self.cmd(f"RCPT TO:<{recipient}>").startswith("250")
        assert self.cmd("DATA").startswith("354")

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (reading gives EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


def self_signed(folder: Path, name: str = "mx.test") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def client_tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


class IngestProcess:
    """`katagate ingest run` as its own process (its memory is its own), settings through the
    environment as an operator gives them; `with IngestProcess(kafka, ...) as ingest:` waits
    until it listens."""

    def __init__(self, kafka: KafkaSettings, log: Path, **settings: Any) -> None:
        values = {"port": 0, "hostname": "mx.test", "relay_domains": [RELAY_DOMAIN],
                  "instance_id": f"test-{uuid.uuid4().hex[:8]}",
                  "drain_timeout_s": DRAIN_TIMEOUT_S, **settings}
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
                    "KATAGATE_TOPIC_PREFIX": kafka.topic_prefix,
                    "KATAGATE_MAIL_PARTITIONS": str(kafka.mail_partitions),
                    "KATAGATE_TRANSACTION_TIMEOUT_MS": str(kafka.transaction_timeout_ms),
                    **{f"KATAGATE_INGEST_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
                       for k, v in values.items()}}
        self.log = log
        self.listening: dict[str, tuple[str, int]] = {}

    def __enter__(self) -> IngestProcess:
        self._stderr = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "katagate", "ingest", "run"], env=self.env,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while "smtp" not in self.listening:
            line = self.process.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"ingest did not listen: {self.log.read_text()[-2000:]}")
            name, _, address = line.strip().partition("=")
            host, _, port = address.rpartition(":")
            if port.isdigit():
                self.listening[name] = (host, int(port))
        return self

    def __exit__(self, *_: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self._stderr.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.listening["smtp"]

    def rss_mb(self) -> float:
        """The process's resident memory, from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


def send(address: tuple[str, int], sender: str, recipients: list[str], data: bytes,
         options: tuple[str, ...] = ()) -> tuple[int, str]:
    with smtplib.SMTP(*address, timeout=30) as client:
        client.ehlo("client.test")
        code, reply = client.mail(sender, options)
        assert code == 250, reply
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            assert code == 250, reply
        code, reply = client.data(data)
        return code, reply.decode()
