"""The whole gateway on a secure backbone: `katagate up --secure` starts the broker with a
SASL_SSL listener only and ACLs enforced, applies the derived grants, and runs every stage as
its own process on its own principal. The mail path works end to end: a clean message is
delivered, an EICAR sample deleted, and a message waiting for its verdict released by an
administrator (`katagate quarantine release`, on the admin principal)."""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from katagate.demo_sink.store import read_messages
from katagate.eventlog.broker import free_port_run
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import Event, decode_event, terminal_outcome
from tests.e2e.test_dashboard_prometheus import Up
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import ROOT, wait_for

pytestmark = pytest.mark.kafka

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
STAGE_LOGS = ("ingest", "scanner", "decider", "projector", "console", "audit")


def config(tmp: Path) -> Path:
    base = free_port_run(13)  # metrics: base + 6 .. 11, up's own + 12
    path = tmp / "katagate.toml"
    path.write_text(f"""
[paths]
state_dir = "{tmp / 'state'}"
[kafka]
broker_port = {base}
topic_prefix = "secure"
[ingest]
port = {base + 1}
relay_domains = ["example.net"]
relay_networks = ["127.0.0.0/8"]
[decider]
next_hop_port = {base + 2}
retry_first_s = 0.5
[kata]
central_node = "emulator"
poll_interval_s = 1
[emulator]
port = {base + 3}
[sink]
port = {base + 2}
[projector]
port = {base + 4}
[console]
port = {base + 5}
[metrics]
base_port = {base + 6}
""")
    return path


def send(port: int, data: bytes) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        client.rcpt("bob@example.net")
        code, reply = client.data(data)
    assert code == 250, reply
    match = re.search(rb"queued as ([A-Za-z0-9]+)", reply)
    assert match, reply
    return match.group(1).decode()


@dataclass(frozen=True)
class SecureUp:
    """What `katagate up --secure` printed: its SASL_SSL bootstrap, the principals' client
    properties, its SMTP port; its state folder and the environment it was started with."""

    servers: str
    clients: Path
    smtp_port: int
    state: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def secure_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureUp]:
    """One secure gateway for the module: starting the SASL_SSL broker is most of each test's
    time, and the plaintext refusal needs a secure broker, not a fresh one."""
    tmp = tmp_path_factory.mktemp("secure")
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "KATAGATE_KAFKA_CONFIG",
                        "KATAGATE_KAFKA_CONFIG_DIR", "KATAGATE_TOPIC_PREFIX")}
    up = Up(config(tmp), env, tmp / "up.log", "--secure")
    try:
        servers = up.wait_line("kafka=", 240).split("=", 1)[1]
        assert up.wait_line("acls: ", 60)
        clients = Path(up.wait_line("kafka-config-dir=", 60).split("=", 1)[1])
        smtp_port = int(up.wait_line("smtp=", 180).rsplit(":", 1)[1])
        up.wait_line("katagate is up", 180)
        yield SecureUp(servers, clients, smtp_port, tmp / "state", env)
    finally:
        up.stop()


def test_every_stage_on_its_own_principal_over_sasl_ssl_runs_the_mail_path(secure_up):
    servers, clients, smtp_port = secure_up.servers, secure_up.clients, secure_up.smtp_port
    env = secure_up.env
    state = secure_up.state
    # The tests read the log as the admin principal, like any other client.
    admin = KafkaSettings(bootstrap_servers=servers, topic_prefix="secure",
                          config_dir=clients, principal="admin")
    mail_topic = TopicNames("secure").mail
    control_topic = TopicNames("secure").control
    # Mail sent before the scanner pinned the Central Node is skipped unscanned
    # (not_connected), as in the product: wait for the connection first.
    wait_for(lambda: any(getattr(e, "state", "") == "connected" for e in (
        decode_event(r.value) for r in read_all(admin, control_topic))
        if e.type == "connection.state_changed"), 90, "connected")

    def events_of(message_id: str) -> list[Event]:
        return [e for e in (decode_event(r.value) for r in read_all(admin, mail_topic))
                if getattr(e, "message_id", None) == message_id]

    def settled(message_id: str) -> list[Event]:
        return wait_for(lambda: (events := events_of(message_id)) and any(
            terminal_outcome(e) is not None for e in events) and events, 90,
            f"a terminal event for {message_id}")

    # A clean message is delivered
    clean = send(smtp_port, b"Subject: clean\r\n\r\nhello\r\n")
    assert "delivery.delivered" in [e.type for e in settled(clean)]
    # An EICAR sample is detected and deleted, never delivered
    sample = send(smtp_port, b"Subject: sample\r\n\r\n" + EICAR + b"\r\n")
    types = [e.type for e in settled(sample)]
    assert "message.discarded" in types
    assert "delivery.delivered" not in types
    # A message waiting for its verdict is released by the administrator
    subprocess.run([sys.executable, "-m", "katagate", "kata-emulator", "faults", "set",
                    "--latency", "60", "--state", str(state / "kata")], check=True,
                   cwd=ROOT, env=env, capture_output=True, timeout=60)
    held = send(smtp_port, b"Subject: held\r\n\r\nwaiting\r\n")
    wait_for(lambda: any(e.type == "scan.submitted" for e in events_of(held)), 60,
             "the submission")
    released = subprocess.run(
        [sys.executable, "-m", "katagate", "quarantine", "release", held, "--comment",
         "expected"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**env, "KAFKA_BOOTSTRAP_SERVERS": servers, "KATAGATE_TOPIC_PREFIX": "secure",
             "KATAGATE_KAFKA_CONFIG_DIR": str(clients)})
    assert released.returncode == 0, released.stderr
    decided = next(e for e in settled(held) if e.type == "action.decided")
    assert decided.reason == "forced_release"
    delivered = wait_for(lambda: (found := read_messages(state / "sink")) and
                         len(found) >= 2 and found, 60, "two deliveries")
    assert sorted(m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
                  for m in delivered) == [b"clean", b"held"]
    # No stage met a refusal on its way: the derived grants are enough for each.
    for name in STAGE_LOGS:
        text = (state / "logs" / f"{name}.log").read_text(errors="replace")
        assert "AUTHORIZATION_FAILED" not in text, f"{name}: {text[-2000:]}"


def test_a_plaintext_client_is_refused_by_the_secure_broker_with_the_setting_named(secure_up):
    """The module's broker is the one `up --secure` started: LocalBroker(secure=True), a
    SASL_SSL listener only, the same as a secure broker started on its own."""
    stage = subprocess.run(
        [sys.executable, "-m", "katagate", "ingest", "run"], cwd=ROOT, capture_output=True,
        text=True, timeout=120, env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": secure_up.servers})
    assert stage.returncode != 0
    last = stage.stderr.strip().splitlines()[-1]
    assert "security.protocol" in last, stage.stderr
    assert "speaks TLS" in last, stage.stderr
