"""The budget's CPU by thread kind (bench/processes.py), read from this process's own threads:
librdkafka's are told from the interpreter's by their names."""

from __future__ import annotations

import os
import time

from confluent_kafka import Producer

from bench.processes import thread_kinds_cpu_s


def test_librdkafka_threads_are_counted_apart_from_the_interpreters() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "client.id": "threads-test"})
    try:
        before = thread_kinds_cpu_s(os.getpid())
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # CPU in the interpreter's own thread only
            sum(range(1000))
        kinds = thread_kinds_cpu_s(os.getpid())
    finally:
        producer.flush(0)
    assert set(kinds) == {"python", "librdkafka"}
    # The busy loop's CPU is counted as the interpreter's, not librdkafka's.
    assert kinds["python"] - before["python"] >= 0.1
    assert kinds["librdkafka"] - before["librdkafka"] < 0.1
