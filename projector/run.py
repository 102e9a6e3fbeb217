"""The live projector: fold every event of katagate.mail, katagate.quarantine and
katagate.control as it is committed, serve the views over HTTP to token holders (and the
metrics on their own listener), and keep a snapshot (views and positions together) so a
restart reads on from where it stood."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException

from katagate.eventlog.health import Health
from katagate.eventlog.preflight import prepare_stage
from katagate.eventlog.settings import KafkaSettings
from katagate.projector.guard import token_file
from katagate.projector.live import LiveProjection, catch_up
from katagate.projector.server import ViewServer, serve_metrics
from katagate.projector.settings import ProjectorSettings
from katagate.projector.snapshot import Positions, open_snapshot, save, snapshot_path
from katagate.projector.source import LogReader, projected_topics
from katagate.projector.views import evolve

log = logging.getLogger(__name__)


def run_projector(
    kafka: KafkaSettings,
    settings: ProjectorSettings,
    stop: threading.Event,
    ready: Callable[[LiveProjection], None] | None = None,
) -> LiveProjection:
    """Run until `stop` is set; `ready` gets the live projection once HTTP is listening."""
    kafka = prepare_stage(kafka, "projector", topics=False)
    health = Health(settings.health_stall_s)
    # Reading the snapshot, the topics' metadata and their ends comes before the first poll.
    part = health.part("projector", blocking_s=2 * kafka.request_timeout_s)
    path = snapshot_path(settings.state_dir, kafka.topic_prefix)
    snapshot = open_snapshot(path, kafka.topic_prefix, rebuild=settings.rebuild)
    live = LiveProjection(projections=snapshot.projections,
                          resumed_from_snapshot=snapshot.resumed)
    reader = LogReader(kafka, projected_topics(kafka), start=snapshot.positions, following=True)
    live.positions = dict(reader.positions)
    if snapshot.resumed:
        log.info("projector: resumed from %s", path)
    server = ViewServer(live, settings, token_file(settings.token_path), health)
    server.start()
    metrics = serve_metrics(live, settings, health)
    if metrics is not None:
        live.metrics_address = metrics.address
        print("projector-metrics={}:{}".format(*live.metrics_address), flush=True)
    live.address = server.address
    print("projector={}:{}".format(*server.address), flush=True)
    # Ready once the fold reaches the log as it stands now: a rebuild from offset 0 is not.
    start = dict(live.positions)
    target: Positions | None = _ends_at_start(reader)
    saved_at_records = -1
    next_snapshot = next_ends = 0.0
    try:
        if ready is not None:
            ready(live)
        while not stop.is_set():
            reads = reader.poll(settings.batch_size, settings.poll_timeout_s)
            part.beat()
            with live.lock:
                for read in reads:
                    if read.event is not None:
                        evolve(live.projections, read.event, read.value)
                    live.newest_ms = max(live.newest_ms, read.timestamp_ms)
                live.positions.update(reader.positions)
                live.records_read = reader.records_read
                live.undecodable = reader.undecodable
                live.caught_up = reader.caught_up
            if target is not None:
                reached = catch_up(start, target, live.positions, live.caught_up)
                health.set("projector", reached)
                target = None if reached.ok else target  # ready once; lag is then a metric
            now = time.monotonic()
            if now >= next_ends:
                next_ends = now + settings.snapshot_interval_s
                part.beat(blocking_s=kafka.request_timeout_s)  # one request, bounded
                try:
                    ends = reader.end_offsets()
                except KafkaException as exc:  # the lag is informative: keep folding
                    log.warning("projector: end offsets unavailable: %s", exc)
                else:
                    with live.lock:
                        live.ends = ends
            if now >= next_snapshot and live.records_read != saved_at_records:
                saved_at_records = _save(live, kafka.topic_prefix)
                next_snapshot = now + settings.snapshot_interval_s
    finally:
        try:
            _save(live, kafka.topic_prefix)
        finally:
            server.close()
            if metrics is not None:
                metrics.close()
            live.projections.close()
            reader.close()
    return live


def _ends_at_start(reader: LogReader) -> Positions:
    try:
        return reader.end_offsets()
    except KafkaException as exc:  # then reading every partition to its end is the sign
        log.warning("projector: end offsets unavailable at start: %s", exc)
        return {}


def _save(live: LiveProjection, prefix: str) -> int:
    """Commit views and positions together; return the record count they hold."""
    with live.lock:
        save(live.projections, live.positions, prefix)
        return live.records_read
