"""The DATA budget on real sockets against ingest on the real broker: several clients in DATA
beyond the budget; the one over it gets 451 4.3.1, the others complete, and the budget is
released after each message and when a client disconnects mid-DATA."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from tests.integration.test_ingest_harness import Ingest, RawClient, received

pytestmark = pytest.mark.kafka

KiB = 1024
MiB = 1024 * KiB
FULL = "451 4.3.1 Too much mail data in transit, try again later"


def held() -> float:
    return REGISTRY.get_sample_value("katagate_ingest_data_held_bytes") or 0.0


def wait_held(at_least: float = 0, at_most: float = float("inf")) -> float:
    deadline = time.monotonic() + 10
    while not at_least <= held() <= at_most:
        assert time.monotonic() < deadline, f"held {held()}, wanted {at_least}..{at_most}"
        time.sleep(0.02)
    return held()


def lines(count: int) -> bytes:
    """`count` lines of 1,000 octets, the longest allowed."""
    return (b"x" * 998 + b"\r\n") * count


def test_data_over_the_budget_gets_451_and_everyone_else_completes(make_kafka_settings):
    kafka = make_kafka_settings()
    # Given a budget of 1 MiB for all sessions together
    with Ingest(kafka, max_message_bytes=MiB, data_budget_bytes=MiB) as ingest:
        a, b, c, d = (RawClient(ingest.address) for _ in range(4))
        for client in (a, b):
            client.envelope()
            client.send(b"Subject: in hand\r\n\r\n" + lines(400))
        wait_held(at_least=800_000)
        # When a third body would take the budget past its limit
        c.envelope()
        c.send(lines(300))
        # Then that message alone gets 451 4.3.1, once its data is in
        assert c.cmd(".") == FULL
        # And with the budget spent, a new DATA is refused before 354
        for client in (a, b):
            client.send(lines(100))
        wait_held(at_least=MiB)
        assert d.cmd("EHLO d.test").startswith("250")
        assert d.cmd("MAIL FROM:<d@example.org>").startswith("250")
        assert d.cmd("RCPT TO:<bob@example.net>").startswith("250")
        assert d.cmd("DATA") == FULL
        # While the messages already in DATA complete
        for client in (a, b):
            assert client.cmd(".").startswith("250 2.0.0 Ok: queued as")
        # And their share is released once answered: the refused client's retry fits
        wait_held(at_most=0)
        assert d.cmd("DATA").startswith("354")
        d.send(b"Subject: retried\r\n\r\n" + lines(900))
        assert d.cmd(".").startswith("250 2.0.0 Ok: queued as")
        wait_held(at_most=0)
        for client in (a, b, c, d):
            client.close()
    assert sorted(e.subject or "" for e in received(kafka)) == ["in hand", "in hand", "retried"]


def test_a_client_that_disconnects_mid_data_gives_its_share_back(make_kafka_settings):
    kafka = make_kafka_settings()
    with Ingest(kafka, max_message_bytes=MiB, data_budget_bytes=MiB) as ingest:
        # Given a client holding most of the budget mid-DATA
        gone = RawClient(ingest.address)
        gone.envelope()
        gone.send(b"Subject: never ends\r\n\r\n" + lines(900))
        wait_held(at_least=900_000)
        # When it disconnects without its final dot
        gone.close()
        # Then the budget is released, and the next client's large message fits
        wait_held(at_most=0)
        client = RawClient(ingest.address)
        client.envelope()
        client.send(b"Subject: after\r\n\r\n" + lines(900))
        assert client.cmd(".").startswith("250 2.0.0 Ok: queued as")
        client.close()
    assert [e.subject for e in received(kafka)] == ["after"]
