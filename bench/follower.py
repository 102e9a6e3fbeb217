"""One more reader of the mail topic, reading it as every stage's loop does, to price a reader.

Several levers of issue 23 (docs/decisions/0010) remove a reader of `katagate.mail`: one reader
per decider process, the scanner and the decider in one process. What a reader costs is the
CPU its process spends taking each record (librdkafka's fetches and the interpreter's consume,
as `eventlog.fetching.gathered` takes them) and the fetches it asks of the broker. This process
follows the topic from its end, decides nothing, and on SIGTERM prints one JSON line: the
records it read and its fetch requests (librdkafka's own count). The benchmark reads its
threads' CPU from /proc (bench/processes.py), in clock ticks (10 ms).

A stage's loop spends time on each batch (deciding, committing), and the records that come
meanwhile make the next batch linger and gather (eventlog/fetching.py): it fetches less often
than a reader that takes each record as it comes. `hold_ms` stands for that time, so that the
follower fetches about as often a message as the stages' readers do (the budget shows both).

    python -m bench.follower --bootstrap HOST:PORT --topic bench.mail [--hold-ms 20]
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

from confluent_kafka import Consumer, TopicPartition

from katagate.eventlog.fetching import gathered
from katagate.eventlog.loop import consumer_config
from katagate.eventlog.records import Consumed
from katagate.eventlog.settings import KafkaSettings

READY = "following"
STATS_INTERVAL_MS = 1000
READY_WITHIN_S = 60.0
LINGER_MS = KafkaSettings.model_fields["loop_linger_ms"].default
HOLD_MS = 20


def fetches(stats: dict[str, Any]) -> int:
    """Fetch requests sent so far, over every broker connection (librdkafka's statistics)."""
    return sum(int(broker.get("req", {}).get("Fetch", 0))
               for broker in stats.get("brokers", {}).values())


def from_the_end(consumer: Consumer, topic: str, timeout_s: float) -> None:
    """Every partition of `topic` assigned at its end as it is now: a record written after
    this returns is read (a reset to "latest" would be resolved at the first fetch, later)."""
    partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
    consumer.assign([
        TopicPartition(topic, p, consumer.get_watermark_offsets(
            TopicPartition(topic, p), timeout=timeout_s)[1])
        for p in partitions])


def follow(bootstrap: str, topic: str, linger_ms: int, hold_ms: int, out: IO[str]) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    config = consumer_config(settings, f"bench-follower-{uuid.uuid4().hex}")
    stats: dict[str, str] = {}
    consumer = Consumer({**config, "bootstrap.servers": bootstrap,
                         "statistics.interval.ms": STATS_INTERVAL_MS,
                         # kept as text: parsing it each second would be CPU a stage never spends
                         "stats_cb": lambda text: stats.update(last=text)})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        from_the_end(consumer, topic, READY_WITHIN_S)
    except Exception as exc:  # the benchmark reads the reason from the exit
        consumer.close()
        raise SystemExit(f"bench.follower: cannot follow {topic} at {bootstrap}: {exc}") from None
    consumer.poll(STATS_INTERVAL_MS / 1000 * 1.5)  # a first statistics report, the baseline
    first = fetches(json.loads(stats.get("last", "{}")))
    print(READY, flush=True, file=out)
    records = 0
    while not stop.is_set():
        batch = gathered(consumer, 500, 0.2, linger_ms / 1000)
        for message in batch:
            if (error := message.error()) is not None and error.fatal():
                raise SystemExit(f"bench.follower: {error}")
        # Built as a stage's loop builds them: part of what a reader costs.
        records += len([Consumed.from_message(m) for m in batch if m.error() is None])
        if batch and hold_ms:
            time.sleep(hold_ms / 1000)
    # The last report, at most a second old: a few idle fetches either way in thousands.
    consumer.poll(STATS_INTERVAL_MS / 1000 * 1.5)
    print(json.dumps({"records": records,
                      "fetches": fetches(json.loads(stats.get("last", "{}"))) - first}),
          flush=True, file=out)
    consumer.close()


class Follower:
    """The follower as a child process of the benchmark: `start` returns once it follows,
    `stop` returns what it read."""

    def __init__(self, bootstrap: str, topic: str, linger_ms: int = LINGER_MS,
                 hold_ms: int = HOLD_MS) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.follower", "--bootstrap", bootstrap, "--topic", topic,
             "--linger-ms", str(linger_ms), "--hold-ms", str(hold_ms)],
            stdout=subprocess.PIPE, text=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    def start(self) -> None:
        assert self._process.stdout is not None
        if (line := self._process.stdout.readline().strip()) != READY:
            self.kill()
            raise RuntimeError(f"the follower did not start (exit {self._process.returncode}, "
                               f"its reason on stderr): {line!r}")

    def stop(self) -> dict[str, int]:
        assert self._process.stdout is not None
        self._process.terminate()
        line = self._process.stdout.readline()  # before the consumer's close, however long
        if not line.strip():
            self.kill()
            raise RuntimeError(f"the follower ended without its figures (exit "
                               f"{self._process.returncode}, its reason on stderr)")
        result: dict[str, int] = json.loads(line)
        return result

    def kill(self) -> None:
        """End it whatever it is doing (the benchmark failed, or it said what it read)."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--linger-ms", type=int, default=LINGER_MS)
    parser.add_argument("--hold-ms", type=int, default=HOLD_MS,
                        help="time spent on each batch, as a stage deciding and committing it")
    args = parser.parse_args()
    follow(args.bootstrap, args.topic, args.linger_ms, args.hold_ms, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
