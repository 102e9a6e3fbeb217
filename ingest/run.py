"""Wires the ingest stage: topics, the control follower, the durable writers, the SMTP
listener; serves until `stop` is set."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaException, Producer

from katagate.eventlog.clients import new_producer
from katagate.eventlog.errors import KafkaUnavailable
from katagate.eventlog.health import Health
from katagate.eventlog.health_server import serve_health
from katagate.eventlog.preflight import prepare_stage
from katagate.eventlog.producer import MAX_RECORD_BYTES
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.ingest.control import ControlFollower, QuarantineUsage
from katagate.ingest.handler import IngestHandler
from katagate.ingest.listener import serve
from katagate.ingest.settings import IngestSettings
from katagate.ingest.shared_counts import SharedCounts
from katagate.ingest.write_state import Batching
from katagate.ingest.writer import DurableWriter
from katagate.ingest.writer_pool import WriterPool
from katagate.schemas import ProducerRef

log = logging.getLogger(__name__)


def durable_producer(kafka: KafkaSettings, settings: IngestSettings, name: str) -> Producer:
    """An idempotent producer whose acknowledgement means every in-sync replica has the
    record; built only once the broker answers for the mail topic."""
    producer = new_producer(kafka, {
        "client.id": name,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        "linger.ms": settings.batch_linger_ms,
        "message.max.bytes": MAX_RECORD_BYTES,
        # A write still unacknowledged when the session has answered 451 ends soon after.
        "message.timeout.ms": int((settings.commit_timeout_s + kafka.request_timeout_s) * 1000),
        "socket.connection.setup.timeout.ms": int(kafka.request_timeout_s * 1000),
    })
    try:
        producer.list_topics(TopicNames(kafka.topic_prefix).mail, kafka.request_timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(f"the broker did not answer: {exc.args[0]}") from None
    return producer


def run_ingest(
    kafka: KafkaSettings,
    settings: IngestSettings,
    stop: threading.Event,
    ready: Callable[[str, int], None] | None = None,
    listen_fds: Sequence[int] = (),
    shared: SharedCounts | None = None,
) -> None:
    """`listen_fds` and `shared`: a worker's listening sockets and the session counts of every
    worker, made by its supervisor (ingest/workers.py)."""
    kafka = prepare_stage(kafka, "ingest")
    health = Health(settings.health_stall_s)
    # Its own listener (metrics_host, loopback by default), never the SMTP one; from the
    # start, so /readyz says 503 while the control log is read and the writers start.
    metrics = serve_health(settings.metrics_host, settings.metrics_port, health)
    if metrics is not None:
        log.info("ingest-metrics=%s:%d", *metrics.address)
        print("ingest-metrics={}:{}".format(*metrics.address), flush=True)
    # The SMTP event loop: beaten by a task on it once it serves (ingest/listener.py).
    smtp = health.part("smtp", blocking_s=settings.control_catchup_s + kafka.request_timeout_s)
    if not settings.relay_domains and not settings.relay_networks:
        log.warning("no relay domains or networks configured: every recipient is refused")
    halt = threading.Event()  # stops the helper threads however serving ends
    control = ControlFollower(kafka)
    control.start(halt)
    quarantine = QuarantineUsage(kafka)  # for on_unavailable = tempfail
    usage_thread = quarantine.start(halt)
    def writer(index: int) -> DurableWriter:
        name = f"{kafka.topic_prefix}-ingest-{settings.instance_id}-w{index}"
        return DurableWriter(
            lambda: durable_producer(kafka, settings, name),
            TopicNames(kafka.topic_prefix),
            ProducerRef(stage="ingest", instance=settings.instance_id),
            Batching(settings.batch_max_messages, settings.batch_max_bytes),
            # Its first step may be a producer's start, as any turn's (below).
            part=health.part(f"ingest-writer-{index}", blocking_s=kafka.request_timeout_s),
            # A turn waits at most for a producer's start (the broker's answer).
            blocking_s=kafka.request_timeout_s,
        )

    writers = WriterPool([writer(i) for i in range(settings.writers)])
    writers.start()
    try:
        # Accept only with the configuration in force, unless the log cannot be read in time:
        # then accept with what was read (rules apply as soon as they arrive).
        deadline = time.monotonic() + settings.control_catchup_s
        if not control.caught_up.wait(settings.control_catchup_s):
            log.warning("control log not read to its end within %.1f s; accepting mail with "
                        "the configuration read so far", settings.control_catchup_s)
        if not writers.ready.wait(max(0.0, deadline - time.monotonic())):
            log.warning("no producer yet; messages get 451 until Kafka answers")
        handler = IngestHandler(settings, lambda: control.state, writers,
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

        def draining(sessions: int) -> None:
            # At once, so that a load balancer stops sending here (ingest/drain.py).
            smtp.not_ready("draining", f"{sessions} sessions open may finish for at most "
                                       f"{settings.drain_timeout_s:g} s")

        try:
            listeners = [socket.socket(fileno=fd) for fd in listen_fds]
            asyncio.run(serve(settings, handler, stop, listening, smtp.beat, draining,
                              listeners, shared))
        finally:
            handler.close()
    finally:
        if metrics is not None:
            metrics.close()
        writers.stop()
        halt.set()
        control.join(5.0)
        usage_thread.join(5.0)
