"""The one load generator every SMTP figure uses: persistent smtplib connections in threads."""

from __future__ import annotations

import itertools
import os
import smtplib
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoadResult:
    messages: int
    seconds: float
    refused: int
    latencies_ms: list[float]
    # Message-ID -> time.time() when its 250 came: for end-to-end latencies at the next hop.
    accepted_at: dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    def summary(self) -> dict[str, float]:
        return {
            "msgs_per_s": round(self.per_second, 1),
            "p50_ms": round(statistics.median(self.latencies_ms), 2) if self.latencies_ms else 0,
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "refused": self.refused,
        }


_CALLS = itertools.count()


def message(size: int, i: int | str) -> bytes:
    head = (f"From: load@example.org\r\nTo: rcpt@example.net\r\nSubject: load {i}\r\n"
            f"Message-ID: <load-{i}@example.org>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def send_load(port: int | Sequence[int], total: int, size: int, concurrency: int,
              host: str = "127.0.0.1") -> LoadResult:
    """`port`: one, or several (ingest instances), connection i going to port i mod n."""
    ports = [port] if isinstance(port, int) else list(port)
    latencies: list[float] = []
    accepted_at: dict[str, float] = {}
    refused = [0]
    lock = threading.Lock()
    # Every message of every call is new: a repeated body would be a verdict-cache hit, and
    # measure neither the scanner nor the Central Node.
    run = f"{os.getpid()}.{next(_CALLS)}"
    per_thread = [total // concurrency + (1 if i < total % concurrency else 0)
                  for i in range(concurrency)]

    def worker(index: int, count: int) -> None:
        try:
            client = smtplib.SMTP(host, ports[index % len(ports)], timeout=120)
        except smtplib.SMTPConnectError:  # refused at the greeting: its messages with it
            with lock:
                refused[0] += count
            return
        client.ehlo("load.example.org")
        mine: list[float] = []
        stamps: dict[str, float] = {}
        bad = 0
        for n in range(count):
            number = f"{run}.{index}.{n}"
            data = message(size, number)
            began = time.perf_counter()
            try:
                client.sendmail("load@example.org", ["rcpt@example.net"], data)
                mine.append((time.perf_counter() - began) * 1000)
                stamps[f"<load-{number}@example.org>"] = time.time()
            except smtplib.SMTPException:
                bad += 1
        client.quit()
        with lock:
            latencies.extend(mine)
            accepted_at.update(stamps)
            refused[0] += bad

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(per_thread)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(len(latencies), time.perf_counter() - began, refused[0], latencies,
                      accepted_at)


def send_same(port: int, total: int, data: bytes, concurrency: int,
              host: str = "127.0.0.1") -> LoadResult:
    """`total` copies of the very same bytes (the verdict cache's case), one recipient each."""
    latencies: list[float] = []
    refused = [0]
    lock = threading.Lock()
    per_thread = [total // concurrency + (1 if i < total % concurrency else 0)
                  for i in range(concurrency)]

    def worker(count: int) -> None:
        client = smtplib.SMTP(host, port, timeout=120)
        client.ehlo("load.example.org")
        mine: list[float] = []
        bad = 0
        for _ in range(count):
            began = time.perf_counter()
            try:
                client.sendmail("news@example.org", ["rcpt@example.net"], data)
                mine.append((time.perf_counter() - began) * 1000)
            except smtplib.SMTPException:
                bad += 1
        client.quit()
        with lock:
            latencies.extend(mine)
            refused[0] += bad

    threads = [threading.Thread(target=worker, args=(c,)) for c in per_thread]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(len(latencies), time.perf_counter() - began, refused[0], latencies)
