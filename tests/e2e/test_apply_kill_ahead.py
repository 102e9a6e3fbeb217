"""`kill -9` of the decider while apply is in the middle of a batch, after some deliveries of it
and before its commit: the restarted apply delivers none of those again, because each outcome
was written ahead and acknowledged before the next began
(docs/decisions/0008-apply-writes-outcomes-ahead.md). Counted at the next hop, a real SMTP
server, by Message-ID. (With the outcomes in the batch's transaction, the restarted apply
delivers the whole batch again: this test fails there.)"""

from __future__ import annotations

import smtplib
import threading
import time
from collections import Counter
from email import message_from_bytes
from ipaddress import IPv4Address
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from katagate.eventlog.broker import free_port
from katagate.eventlog.topics import TopicNames
from katagate.schemas import ActionDecided, KataSettings
from tests.conftest import ensure_namespace
from tests.e2e.gateway import Gateway, is_terminal
from tests.faults.harness import Stage, smtp_answers
from tests.integration.kata_harness import Emulator, wait_for

pytestmark = pytest.mark.kafka

MESSAGES = 7  # about six records each: the killed batch (600 records at most) holds them all
DELIVERED_BEFORE_KILL = 4  # the first message, then three of the next batch


class HoldingNextHop:
    """Counts Message-IDs; holds the first message until `start` is set, and the one after
    DELIVERED_BEFORE_KILL until `release` is set, then refuses it (its client was killed)."""

    def __init__(self) -> None:
        self.start, self.holding, self.release = (threading.Event(), threading.Event(),
                                                  threading.Event())
        self.first = threading.Event()  # the first message is held
        self.received: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # Blocking the server's loop: one message at a time, and each in order.
        self.first.set()
        self.start.wait(120)
        if self.count() == DELIVERED_BEFORE_KILL and not self.release.is_set():
            self.holding.set()
            self.release.wait(120)
            return "451 4.3.0 try again later"
        message_id = message_from_bytes(envelope.original_content)["Message-ID"]
        with self._lock:
            self.received[str(message_id)] += 1
        return "250 2.0.0 Ok"

    def count(self) -> int:
        with self._lock:
            return sum(self.received.values())


def mail(n: int) -> bytes:
    return (f"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: ahead {n}\r\n"
            f"Message-ID: <ahead-{n}@example.org>\r\n\r\nbody {n}\r\n").encode()


def send(port: int, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice@example.org", ["bob@example.net"], data)


def test_a_killed_apply_does_not_deliver_again_what_it_recorded_ahead(kafka_bootstrap, tmp_path):
    kafka = ensure_namespace(kafka_bootstrap)
    emulator = Emulator(tmp_path / "kata").start()
    next_hop = HoldingNextHop()
    next_hop._controller.start()
    smtp_port = free_port()
    common = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
              "KATAGATE_TOPIC_PREFIX": kafka.topic_prefix,
              "KATAGATE_TRANSACTION_TIMEOUT_MS": "10000",
              "KATAGATE_MAIL_PARTITIONS": str(kafka.mail_partitions)}
    stages = [
        Stage("ingest", {**common, "KATAGATE_INGEST_PORT": str(smtp_port),
                         "KATAGATE_INGEST_RELAY_DOMAINS": '["example.net"]',
                         "KATAGATE_INGEST_INSTANCE_ID": "ingest-0"}, tmp_path / "ingest.log"),
        Stage("scanner", {**common, "KATAGATE_SCANNER_STATE_DIR": str(tmp_path / "gw"),
                          "KATAGATE_SCANNER_INSTANCE_ID": "scanner-0",
                          "KATAGATE_SCANNER_RECHECK_S": "0.3"}, tmp_path / "scanner.log"),
    ]
    decider = Stage("decider", {**common, "KATAGATE_DECIDER_NEXT_HOP_PORT": str(next_hop.port),
                                "KATAGATE_DECIDER_INSTANCE_ID": "decider-0",
                                "KATAGATE_DECIDER_HELO_NAME": "gw.example.net",
                                "KATAGATE_DECIDER_DELIVERY_CONCURRENCY": "1",
                                "KATAGATE_DECIDER_RETRY_FIRST_S": "0.5"},
                    tmp_path / "decider.log")
    # Only the configuring and observing half of the harness: the stages run as processes.
    gateway = Gateway.__new__(Gateway)
    gateway.kafka, gateway.names = kafka, TopicNames(kafka.topic_prefix)
    gateway.configure(KataSettings(central_node_address=IPv4Address("127.0.0.1"),
                                   central_node_port=emulator.port, poll_interval_s=1), [])
    try:
        for stage in [*stages, decider]:
            stage.start()
        (sensor,) = wait_for(emulator.sensors, 60, "the integration request")
        emulator.cli("sensors", "accept", sensor["sensorId"])
        wait_for(lambda: "connected" in gateway.connection_states(), 60, "connected")
        wait_for(lambda: smtp_answers(smtp_port), 60, "ingest listening")
        # Given a backlog received and decided while apply waits on the first delivery: its
        # next batch holds the others from their MessageReceived on (so that, read again, it
        # would begin them anew), delivered one at a time
        send(smtp_port, mail(0))
        assert next_hop.first.wait(120), "the first message never reached the next hop"
        for n in range(1, MESSAGES):
            send(smtp_port, mail(n))
        wait_for(lambda: sum(isinstance(e, ActionDecided) for e in gateway.mail_events())
                 >= MESSAGES, 120, "every message decided")
        next_hop.start.set()
        # When the decider is killed while the next hop holds a delivery of that batch, the
        # ones before it answered 250 (and their outcomes acknowledged: a second is ample)
        assert next_hop.holding.wait(120), "the next hop never held a delivery"
        time.sleep(1.0)
        decider.kill()
        assert next_hop.count() == DELIVERED_BEFORE_KILL
        next_hop.release.set()
        # Then the restarted apply delivers the rest, and none of those delivered before twice
        decider.start()
        wait_for(lambda: next_hop.count() >= MESSAGES, 120, "every message at the next hop")
        time.sleep(3)  # a duplicate would come now
        assert sorted(next_hop.received) == sorted(
            f"<ahead-{n}@example.org>" for n in range(MESSAGES))
        assert max(next_hop.received.values()) == 1, next_hop.received.most_common(4)
        # And the log holds one terminal event per message
        terminal = Counter(e.message_id for e in gateway.mail_events()  # type: ignore[attr-defined]
                           if is_terminal(e))
        assert len(terminal) == MESSAGES
        assert set(terminal.values()) == {1}, terminal
    finally:
        next_hop.release.set()
        next_hop.start.set()
        for stage in [decider, *stages]:
            stage.stop()
        next_hop._controller.stop()
        emulator.stop()
