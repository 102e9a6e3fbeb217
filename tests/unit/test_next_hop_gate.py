"""A next hop that does not answer is suspended after a cohort of connection failures, as
Postfix suspends a dead destination (decider/next_hop_gate.py): the gate alone on a fake
clock, then apply's batch against a real socket that accepts connections and never greets."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from katagate.decider.apply import Apply
from katagate.decider.next_hop_gate import NextHopGate
from katagate.decider.settings import DeciderSettings
from katagate.decider.smtp_out import DeliveryOutcome
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.write_ahead import WriteAhead
from katagate.schemas import NotificationComposed
from tests.unit.test_apply_written_ahead import MAIL, Acking, Clock, record
from tests.unit.test_decider_core import REF, T0
from tests.unit.test_health import Clock as Ticks

REFUSED = DeliveryOutcome("deferred", "connection refused by 127.0.0.1:25", None)


def test_a_cohort_of_connection_failures_suspends_the_next_hop_until_the_time_is_up():
    ticks = Ticks()
    gate = NextHopGate("127.0.0.1:25", cohort=3, suspend_s=30, clock=ticks)
    gate.record(REFUSED)
    gate.record(REFUSED)
    assert gate.closed() is None  # two of three: still tried
    gate.record(REFUSED)
    suspended = gate.closed()
    assert suspended == DeliveryOutcome(
        "deferred", "delivery temporarily suspended: connection refused by 127.0.0.1:25", None)
    ticks.now += 29.9
    assert gate.closed() is not None
    ticks.now += 0.1
    assert gate.closed() is None  # the time is up: the next delivery tries again
    # One more failure then suspends at once: the first tries were a cohort already
    gate.record(DeliveryOutcome("deferred", "timed out after 60 s", None))
    assert gate.closed() == DeliveryOutcome(
        "deferred", "delivery temporarily suspended: timed out after 60 s", None)


@pytest.mark.parametrize("reply", [
    DeliveryOutcome("delivered", "250 2.0.0 Ok: queued as 4Xy", 250),
    DeliveryOutcome("deferred", "451 4.3.0 try later", 451),  # it talks SMTP: it is up
    DeliveryOutcome("failed", "550 5.1.1 no such user", 550),
])
def test_any_smtp_reply_resets_the_count_and_lifts_a_suspension(reply: DeliveryOutcome):
    ticks = Ticks()
    gate = NextHopGate("127.0.0.1:25", cohort=2, suspend_s=30, clock=ticks)
    gate.record(REFUSED)
    gate.record(reply)
    gate.record(REFUSED)
    assert gate.closed() is None  # not two in a row
    gate.record(REFUSED)
    assert gate.closed() is not None
    ticks.now += 30
    gate.record(reply)  # the probe after the suspension got an answer
    gate.record(REFUSED)
    assert gate.closed() is None  # a whole cohort is needed again


@pytest.fixture
def silent_next_hop():
    """Accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def notice(index: int) -> NotificationComposed:
    return NotificationComposed(
        event_id=UUID(int=100 + index), occurred_at=T0, producer=REF,
        message_id=f"{index:032x}", kind="detect", audience="administrators", about="m0000001",
        to=["soc@example.net"], data="Subject: x\r\n\r\nx\r\n")


@contextlib.contextmanager
def applying(port: int, clock: Clock, **settings: float) -> Iterator[tuple[Apply, Acking]]:
    """Apply with 2 delivery threads to `port`, writing ahead to an acknowledging producer."""
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", topic_prefix="t", config_file=None,
                          config_dir=None, principal=None, request_timeout_s=1)
    producer = Acking()
    writer = WriteAhead(lambda: producer, MAIL, bound_s=2)
    handler = Apply(kafka, DeciderSettings(next_hop_port=port, helo_name="gw",
                                           delivery_concurrency=2, **settings),
                    None, REF, clock, writer)  # type: ignore[arg-type]
    try:
        yield handler, producer
    finally:
        handler.close()
        writer.close(0.1)


def test_a_batch_to_a_silent_next_hop_waits_out_one_cohort_not_every_delivery(silent_next_hop):
    with applying(silent_next_hop, Clock(), smtp_timeout_s=1) as (handler, producer):
        began = time.monotonic()
        results = handler.decide_batch([record(i, notice(i)) for i in range(10)])
        took = time.monotonic() - began
    assert results == [[]] * 10
    replies = [e.reply for e in producer.events()]  # type: ignore[attr-defined]
    # The first cohort (the two delivery threads) waited for the greeting; the rest did not
    tried = [r for r in replies if not r.startswith("delivery temporarily suspended: ")]
    assert len(tried) == 2, replies
    assert all("timed out" in r for r in tried), replies
    suspended = [r for r in replies if r not in tried]
    assert len(suspended) == 8
    assert {r.removeprefix("delivery temporarily suspended: ") for r in suspended} <= set(tried)
    assert took < 3, f"{took:.1f} s: the deliveries after the cohort waited too"


def test_retries_falling_due_are_carried_out_by_the_pool_and_suspended_with_the_batch(
        silent_next_hop):
    clock = Clock()
    with applying(silent_next_hop, clock, smtp_timeout_s=2, retry_first_s=0.05) as (
            handler, producer):
        handler.decide_batch([record(i, notice(i)) for i in range(6)])
        time.sleep(0.1)  # the suspension (retry_first_s) is over
        clock.now = T0 + timedelta(seconds=1)  # every retry is due
        began = time.monotonic()
        assert handler.tick() == []
        took = time.monotonic() - began
        still_due = len(handler.parcels.due(clock.now))
    # Two waves of the pool at a time: four of the six; the other two are still due
    retried = [e.reply for e in producer.events()][6:]  # type: ignore[attr-defined]
    assert len(retried) == 4
    assert still_due == 2
    # Two tried at once (one after the other would take 4 s), then the next hop was suspended
    assert sum(r.startswith("delivery temporarily suspended: ") for r in retried) == 2
    assert took < 3.5, f"{took:.1f} s"
