"""Foundation figures: broker start (jars cached and not), cache size, and the transactional
loop's throughput for small events against a bare consume-produce copy in the same run.

    python -m bench.foundation [--events N] [--skip-cold]

Writes bench/results/foundation-<time>/report.json and report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import machine
from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.broker.classpath import classpath_dir, default_cache_dir, kafka_version
from katagate.eventlog.clients import new_admin, new_consumer, new_producer
from katagate.eventlog.handler import Handler
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicSpec, ensure_topics
from katagate.schemas import decode_event

RESULTS = Path(__file__).resolve().parent / "results"


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def time_start(broker: LocalBroker) -> float:
    began = time.monotonic()
    broker.start(port=free_port(), timeout=600)
    return time.monotonic() - began


def broker_starts(skip_cold: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    scratch = Path(tempfile.mkdtemp(prefix="katagate-bench-"))
    try:
        if not skip_cold:
            # Nothing cached: an empty Maven repository and an empty katagate cache.
            os.environ["MAVEN_OPTS"] = f"-Dmaven.repo.local={scratch / 'm2'}"
            cold = LocalBroker(scratch / "cold", cache_dir=scratch / "cache")
            out["cold_start_no_cache_s"] = round(time_start(cold), 2)
            cold.stop()
            del os.environ["MAVEN_OPTS"]
            out["maven_repo_bytes"] = du(scratch / "m2")
        warm = LocalBroker(scratch / "warm")
        out["start_jars_cached_new_folder_s"] = round(time_start(warm), 2)
        stop_began = time.monotonic()
        warm.stop()
        out["stop_s"] = round(time.monotonic() - stop_began, 2)
        out["restart_existing_folder_s"] = round(time_start(warm), 2)
        warm.stop()
        out["jar_cache_bytes"] = du(classpath_dir(default_cache_dir()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def sample_payload() -> bytes:
    from tests.unit.fixtures.events import sample_events

    for event in sample_events():
        if event.type == "connection.state_changed":
            return event.model_dump_json().encode()
    raise RuntimeError("no connection.state_changed sample")


def feed(settings: KafkaSettings, topic: str, payload: bytes, n: int) -> None:
    producer = TransactionalProducer(settings, f"feeder-{uuid.uuid4().hex[:8]}")
    for start in range(0, n, 10_000):
        producer.begin()
        end = min(n, start + 10_000)
        producer.produce(Outgoing(topic, payload, f"k{i % 64}".encode()) for i in range(start, end))
        producer.commit()


def bare_copy(settings: KafkaSettings, src: str, dst: str, n: int) -> float:
    """The baseline: read_committed consumer + idempotent producer, no transactions."""
    consumer = new_consumer(settings, {
        "group.id": f"bare-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
        "enable.auto.commit": True, "isolation.level": "read_committed",
    })
    producer = new_producer(settings, {"enable.idempotence": True, "linger.ms": 2,
                                       "compression.type": "zstd"})
    consumer.subscribe([src])
    done = 0
    began: float | None = None
    while done < n:
        for message in consumer.consume(500, 0.2):
            if message.error():
                continue
            began = began or time.monotonic()
            while True:
                try:
                    producer.produce(dst, message.value(), message.key())
                    break
                except BufferError:
                    producer.poll(0.05)
            done += 1
        producer.poll(0)
    producer.flush(60)
    consumer.close()
    assert began is not None
    return n / (time.monotonic() - began)


class CopyBytes(Handler):
    def __init__(self, dst: str) -> None:
        self.dst = dst

    def decide(self, record: Consumed) -> list[Outgoing]:
        return [Outgoing(self.dst, record.value or b"", record.key)]


class DecodeAndEncode(Handler):
    """What a stage does at least: decode the event, validate it, encode an event back."""

    def __init__(self, dst: str) -> None:
        self.dst = dst

    def decide(self, record: Consumed) -> list[Outgoing]:
        return [Outgoing.event(self.dst, decode_event(record.value or b""))]


def loop_copy(settings: KafkaSettings, src: str, dst: str, n: int, handler: Any,
              batch: int) -> float:
    tag = uuid.uuid4().hex[:8]
    loop = TransactionalLoop(
        settings, stage="bench", group_id=f"bench-{tag}", transactional_id=f"bench-{tag}",
        topics=[src], handler=handler(dst), dead_letter_topic=f"{settings.topic_prefix}.deadletter",
        batch_size=batch,
    )
    done = 0
    began: float | None = None
    while done < n:
        got = loop.run_once()
        if got:
            began = began or time.monotonic()
            done += got
    elapsed = time.monotonic() - (began or time.monotonic())
    loop.close()
    return n / elapsed


def idle_latency(
    settings: KafkaSettings, src: str, dst: str, samples: int = 40
) -> dict[str, float]:
    """One record at a time through an idle loop: input committed -> output readable."""
    import statistics
    import threading

    tag = uuid.uuid4().hex[:8]
    loop = TransactionalLoop(
        settings, stage="bench", group_id=f"lat-{tag}", transactional_id=f"lat-{tag}",
        topics=[src], handler=CopyBytes(dst),
        dead_letter_topic=f"{settings.topic_prefix}.deadletter",
    )
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    worker.start()
    reader = new_consumer(settings, {"group.id": f"latr-{tag}", "auto.offset.reset": "latest",
                                     "isolation.level": "read_committed"})
    reader.subscribe([dst])
    while not reader.assignment():
        reader.poll(0.1)
    feeder = TransactionalProducer(settings, f"latf-{tag}")
    latencies = []
    for i in range(samples + 5):
        marker = f"lat-{i}".encode()
        began = time.monotonic()
        feeder.begin()
        feeder.produce([Outgoing(src, marker, b"k")])
        feeder.commit()
        while True:
            message = reader.poll(5)
            if message is not None and not message.error() and message.value() == marker:
                break
        if i >= 5:  # the first few warm the group up
            latencies.append((time.monotonic() - began) * 1000)
    stop.set()
    worker.join(30)
    reader.close()
    latencies.sort()
    return {
        "idle_latency_ms_p50": round(statistics.median(latencies), 1),
        "idle_latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1], 1),
    }


def loop_throughput(n: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="katagate-bench-loop-"))
    broker = LocalBroker(folder)
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    try:
        if not servers:
            servers = broker.start(port=free_port()).bootstrap_servers
        assert servers
        settings = KafkaSettings(bootstrap_servers=servers, topic_prefix=f"b{uuid.uuid4().hex[:8]}")
        admin = new_admin(KafkaSettings(bootstrap_servers=servers))
        src = f"{settings.topic_prefix}.in"
        ensure_topics(admin, settings)
        outs = [f"{settings.topic_prefix}.out{i}" for i in range(7)]
        ensure_topics(admin, settings, [TopicSpec(src, 6), *(TopicSpec(t, 6) for t in outs)])
        payload = sample_payload()
        feed(settings, src, payload, n)
        result: dict[str, Any] = {"events": n, "event_bytes": len(payload)}
        # Side by side, interleaved: the baseline first and again last to show drift.
        result["bare_copy_eps"] = round(bare_copy(settings, src, outs[0], n))
        for i, batch in enumerate((100, 500, 2000), start=1):
            result[f"loop_copy_batch{batch}_eps"] = round(
                loop_copy(settings, src, outs[i], n, CopyBytes, batch))
        result["loop_decode_encode_batch500_eps"] = round(
            loop_copy(settings, src, outs[4], n, DecodeAndEncode, 500))
        result["bare_copy_again_eps"] = round(bare_copy(settings, src, outs[5], n))
        lat_src = f"{settings.topic_prefix}.lat"
        ensure_topics(admin, settings, [TopicSpec(lat_src, 1)])
        result.update(idle_latency(settings, lat_src, outs[6]))
        base = (result["bare_copy_eps"] + result["bare_copy_again_eps"]) / 2
        for key in list(result):
            if key.startswith("loop_"):
                result[key.replace("_eps", "_ratio_to_bare")] = round(result[key] / base, 3)
        return result
    finally:
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--skip-cold", action="store_true", help="skip the no-cache broker start")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "kafka_version": kafka_version(),
        "broker": broker_starts(args.skip_cold),
        "loop": loop_throughput(args.events),
    }
    folder = RESULTS / f"foundation-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["| figure | value |", "|---|---|"]
    for section in ("broker", "loop"):
        lines += [f"| {section}.{key} | {value} |" for key, value in report[section].items()]
    (folder / "report.md").write_text(
        f"# Foundation benchmark, {report['when']}\n\n{json.dumps(report['machine'])}\n\n"
        + "\n".join(lines) + "\n"
    )
    print("\n".join(lines))
    print(f"written to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
