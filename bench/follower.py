"""One more reader of the mail topic, reading it as every stage's loop does, to price a reader.

Several levers of issue 23 (docs/decisions/0010) remove a reader of `katagate.mail`: one reader
per decider process, the scanner and the decider in one process. What a reader costs is the
CPU its process spends taking each record (librdkafka's fetches and the interpreter's consume,
as `eventlog.fetching.gathered` takes them) and the fetches it asks of the broker. This process
follows the topic from its end in a group of its own, decides nothing, and on SIGTERM prints
one JSON line: the records it read and its fetch requests (librdkafka's own count). The
benchmark reads its threads' CPU from /proc (bench/processes.py).

    python -m bench.follower --bootstrap HOST:PORT --topic bench.mail
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import IO, Any

from confluent_kafka import Consumer

from katagate.eventlog.fetching import gathered
from katagate.eventlog.loop import consumer_config
from katagate.eventlog.records import Consumed
from katagate.eventlog.settings import KafkaSettings

READY = "following"
STATS_INTERVAL_MS = 1000
ASSIGNED_WITHIN_S = 60.0


def fetches(stats: dict[str, Any]) -> int:
    """Fetch requests sent so far, over every broker connection (librdkafka's statistics)."""
    return sum(int(broker.get("req", {}).get("Fetch", 0))
               for broker in stats.get("brokers", {}).values())


def follow(bootstrap: str, topic: str, linger_ms: int, out: IO[str]) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    config = consumer_config(settings, f"bench-follower-{uuid.uuid4().hex}")
    latest: dict[str, Any] = {}
    consumer = Consumer({**config, "bootstrap.servers": bootstrap,
                         "auto.offset.reset": "latest",
                         "statistics.interval.ms": STATS_INTERVAL_MS,
                         "stats_cb": lambda text: latest.update(stats=json.loads(text))})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer.subscribe([topic])
    deadline = time.monotonic() + ASSIGNED_WITHIN_S
    while not consumer.assignment() and not stop.is_set():
        if time.monotonic() > deadline:
            consumer.close()
            raise SystemExit(f"bench.follower: no partition of {topic} assigned within "
                             f"{ASSIGNED_WITHIN_S:.0f} s from {bootstrap}")
        consumer.poll(0.1)
    # The positions: "latest" is resolved at the first fetch of each partition.
    consumer.position(consumer.assignment())
    gathered(consumer, 1, 0.5, 0)
    print(READY, flush=True, file=out)
    records = 0
    first = fetches(latest.get("stats", {}))
    while not stop.is_set():
        batch = gathered(consumer, 500, 0.2, linger_ms / 1000)
        records += len([Consumed.from_message(m) for m in batch if m.error() is None])
    consumer.poll(STATS_INTERVAL_MS / 1000 * 1.5)  # one more statistics report
    print(json.dumps({"records": records,
                      "fetches": fetches(latest.get("stats", {})) - first}), flush=True,
          file=out)
    consumer.close()


class Follower:
    """The follower as a child process of the benchmark: `start` returns once it follows,
    `stop` returns what it read."""

    def __init__(self, bootstrap: str, topic: str,
                 linger_ms: int = KafkaSettings.model_fields["loop_linger_ms"].default) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.follower", "--bootstrap", bootstrap, "--topic", topic,
             "--linger-ms", str(linger_ms)], stdout=subprocess.PIPE, text=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    def start(self) -> None:
        assert self._process.stdout is not None
        if (line := self._process.stdout.readline().strip()) != READY:
            self._process.kill()
            raise RuntimeError(f"the follower did not start: {line!r}")

    def stop(self) -> dict[str, int]:
        self._process.terminate()
        out, _ = self._process.communicate(timeout=30)
        result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return result

    def kill(self) -> None:
        """End it whatever it is doing (the benchmark failed)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--linger-ms", type=int,
                        default=KafkaSettings.model_fields["loop_linger_ms"].default)
    args = parser.parse_args()
    follow(args.bootstrap, args.topic, args.linger_ms, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
