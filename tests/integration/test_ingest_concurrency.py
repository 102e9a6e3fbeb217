"""Concurrent senders: every message accepted exactly once."""

from __future__ import annotations

import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import REGISTRY

from tests.integration.test_ingest_harness import Ingest, received

pytestmark = pytest.mark.kafka


def durable() -> float:
    return REGISTRY.get_sample_value("katagate_ingest_writes_total",
                                     {"outcome": "durable"}) or 0.0


def sender(address: tuple[str, int], name: str, count: int,
           start: threading.Barrier) -> list[tuple[int, str, str]]:
    results = []
    with smtplib.SMTP(*address, timeout=60) as client:
        client.ehlo(f"{name}.test")
        start.wait()
        for n in range(count):
            subject = f"{name}-{n}"
            client.mail(f"{name}@example.org")
            client.rcpt("bob@example.net")
            code, reply = client.data(f"Subject: {subject}\r\n\r\nbody {n}\r\n".encode())
            results.append((code, reply.decode(), subject))
    return results


def run_senders(address: tuple[str, int], senders: int, each: int
                ) -> tuple[list[tuple[int, str, str]], float]:
    start = threading.Barrier(senders + 1)
    with ThreadPoolExecutor(senders) as pool:
        futures = [pool.submit(sender, address, f"s{i}", each, start) for i in range(senders)]
        start.wait()
        began = time.monotonic()
        results = [r for f in futures for r in f.result()]
        return results, time.monotonic() - began


def test_fifty_concurrent_senders_are_each_accepted_once(kafka_settings):
    before = durable()
    with Ingest(kafka_settings) as ingest:
        results, _ = run_senders(ingest.address, 50, 1)
    assert [code for code, _, _ in results] == [250] * 50
    ids = {reply.rsplit(" ", 1)[1] for _, reply, _ in results}
    events = received(kafka_settings)
    assert len(events) == 50
    assert {e.message_id for e in events} == ids
    assert sorted(e.subject or "" for e in events) == sorted(s for _, _, s in results)
    assert durable() - before == 50


def test_ten_senders_throughput(kafka_settings):
    with Ingest(kafka_settings) as ingest:
        results, elapsed = run_senders(ingest.address, 10, 30)
    assert [code for code, _, _ in results] == [250] * 300
    assert len(received(kafka_settings)) == 300
    print(f"\n10 senders: {300 / elapsed:.0f} messages/s")
