"""Wires the ingest stage: topics, the control follower, the group-commit writer, the SMTP
listener; serves until `stop` is set."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from katagate.eventlog.health import Health
from katagate.eventlog.health_server import serve_health
from katagate.eventlog.preflight import prepare_stage
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.ingest.committer import Batching, CommitterPool, GroupCommitter
from katagate.ingest.control import ControlFollower, QuarantineUsage
from katagate.ingest.handler import IngestHandler
from katagate.ingest.server import serve
from katagate.ingest.settings import IngestSettings
from katagate.schemas import ProducerRef

log = logging.getLogger(__name__)


def transactional_id(kafka: KafkaSettings, settings: IngestSettings) -> str:
    return PRINCIPALS["ingest"].transactional_id(kafka.topic_prefix,
                                                 f"ingest-{settings.instance_id}")


def run_ingest(
    kafka: KafkaSettings,
    settings: IngestSettings,
    stop: threading.Event,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    kafka = prepare_stage(kafka, "ingest")
    health = Health(settings.health_stall_s)
    # Its own listener (metrics_host, loopback by default), never the SMTP one; from the
    # start, so /readyz says 503 while the control log is read and the writers start.
    metrics = serve_health(settings.metrics_host, settings.metrics_port, health)
    if metrics is not None:
        log.info("ingest-metrics=%s:%d", *metrics.address)
        print("ingest-metrics={}:{}".format(*metrics.address), flush=True)
    # The SMTP event loop: beaten by a task on it once it serves (ingest/server.py).
    smtp = health.part("smtp", blocking_s=settings.control_catchup_s + kafka.request_timeout_s)
    if not settings.relay_domains and not settings.relay_networks:
        log.warning("no relay domains or networks configured: every recipient is refused")
    halt = threading.Event()  # stops the helper threads however serving ends
    control = ControlFollower(kafka)
    control.start(halt)
    quarantine = QuarantineUsage(kafka)  # for on_unavailable = tempfail
    usage_thread = quarantine.start(halt)
    def writer(index: int) -> GroupCommitter:
        # Writer 0 keeps the id a single writer always had; a restart with as many writers
        # fences (and aborts the transactions of) the previous ones.
        tid = transactional_id(kafka, settings) + (f"-w{index}" if index else "")
        return GroupCommitter(
            lambda: TransactionalProducer(kafka, tid),
            TopicNames(kafka.topic_prefix),
            ProducerRef(stage="ingest", instance=settings.instance_id),
            Batching(settings.batch_max_messages, settings.batch_max_bytes,
                     settings.batch_linger_ms / 1000),
            part=health.part(f"ingest-writer-{index}"),
            # A turn waits at most for a producer's start or a commit to its deadline.
            blocking_s=max(kafka.request_timeout_s, settings.commit_timeout_s),
        )

    committer = CommitterPool([writer(i) for i in range(settings.writers)])
    committer.start()
    try:
        # Accept only with the configuration in force, unless the log cannot be read in time:
        # then accept with what was read (rules apply as soon as they arrive).
        deadline = time.monotonic() + settings.control_catchup_s
        if not control.caught_up.wait(settings.control_catchup_s):
            log.warning("control log not read to its end within %.1f s; accepting mail with "
                        "the configuration read so far", settings.control_catchup_s)
        if not committer.ready.wait(max(0.0, deadline - time.monotonic())):
            log.warning("no transactional producer yet; messages get 451 until Kafka answers")
        handler = IngestHandler(settings, lambda: control.state, committer,
                                lambda: quarantine.usage)
        # aiosmtpd logs every command of every session at INFO: a fifth of the event loop's
        # time under load. Our own line per accepted message (handler.py) is the mail log.
        logging.getLogger("mail.log").setLevel(logging.WARNING)

        def listening(host: str, port: int) -> None:
            smtp.ready("listening", f"{host}:{port}")
            log.info("smtp=%s:%d", host, port)
            print(f"smtp={host}:{port}", flush=True)
            if ready is not None:
                ready(host, port)

        try:
            asyncio.run(serve(settings, handler, stop, listening, smtp.beat))
        finally:
            handler.close()
    finally:
        if metrics is not None:
            metrics.close()
        committer.stop()
        halt.set()
        control.join(5.0)
        usage_thread.join(5.0)
