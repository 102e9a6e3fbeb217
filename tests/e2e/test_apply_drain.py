"""A stop of the decider while apply delivers a backlog to a slow next hop: the deliveries begun
before the drain's deadline are recorded and committed, those not begun are carried out after
the next start, and the next hop receives every message exactly once (counted by its
Message-ID there, not by our events)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from katagate.eventlog.broker import free_port
from katagate.schemas import ActionDecided, MessageDelivered
from tests.e2e.gateway import Gateway
from tests.integration.kata_harness import wait_for

pytestmark = pytest.mark.kafka

MESSAGES = 30
DELIVERY_S = 0.25  # the next hop's time per message: 30 take 7.5 s, the drain is 1 s


class SlowNextHop:
    """A real SMTP server that takes DELIVERY_S per message and counts Message-IDs; it holds
    the first message until the gate opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.received: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.gate.wait(60)
        time.sleep(DELIVERY_S)  # blocks the server: one message at a time, as a slow MTA
        message_id = message_from_bytes(envelope.original_content)["Message-ID"]
        with self._lock:
            self.received[str(message_id)] += 1
        return "250 2.0.0 Ok: queued as Q" + str(sum(self.received.values()))

    def start(self) -> SlowNextHop:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def count(self) -> int:
        with self._lock:
            return sum(self.received.values())


def mail(n: int) -> bytes:
    return (f"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: drain {n}\r\n"
            f"Message-ID: <drain-{n}@example.org>\r\n\r\nbody {n}\r\n").encode()


def test_a_stop_mid_backlog_commits_what_was_delivered_and_delivers_the_rest_once(
        kafka_settings, tmp_path):
    next_hop = SlowNextHop().start()
    gw = Gateway(kafka_settings, tmp_path, decider={
        "next_hop_port": next_hop.port, "delivery_concurrency": 1, "drain_timeout_s": 1.0})
    try:
        # Given a backlog the next hop takes several seconds to receive, decided while apply
        # waits on the first delivery: apply's next batch holds all the others
        ids = [gw.send(mail(n)) for n in range(MESSAGES)]
        wait_for(lambda: sum(isinstance(e, ActionDecided) for e in gw.mail_events())
                 >= MESSAGES, 120, "every message decided")
        next_hop.gate.set()
        wait_for(lambda: next_hop.count() >= 3, 60, "the first deliveries")
        # When the decider is stopped while it delivers
        started = time.monotonic()
        gw.stop_decider()
        stop_took = time.monotonic() - started
        at_stop = next_hop.count()
        # Then it stopped within the drain (1 s) and a delivery, not at the end of its batch
        assert at_stop < MESSAGES // 2, f"{at_stop} delivered before the stop ended"
        assert stop_took < 5, stop_took
        # And when it starts again, every message arrives, none twice
        gw.start_decider()
        wait_for(lambda: next_hop.count() >= MESSAGES, 120, "every message at the next hop")
        time.sleep(2)  # a duplicate would come now
        assert sorted(next_hop.received) == sorted(
            f"<drain-{n}@example.org>" for n in range(MESSAGES))
        assert max(next_hop.received.values()) == 1, next_hop.received.most_common(3)
        # And each message has one MessageDelivered naming the next hop's queue id
        delivered = [e for e in gw.mail_events() if isinstance(e, MessageDelivered)]
        assert sorted(e.message_id for e in delivered) == sorted(ids)
        assert all("queued as Q" in e.reply for e in delivered)
    finally:
        gw.close()
        next_hop.stop()
