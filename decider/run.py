"""Wires one decider instance: the admission single writer (while elected), the per-message
decisions, and apply — each a transactional loop in its own thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from katagate.decider.admission import Admission, new_control_view
from katagate.decider.decisions import Decisions
from katagate.decider.settings import DeciderSettings
from katagate.eventlog.drain import Drain
from katagate.eventlog.election import Election
from katagate.eventlog.health import Health
from katagate.eventlog.health_server import serve_health
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.preflight import prepare_stage
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import ProducerFenced, TransactionalProducer
from katagate.eventlog.restart import restarting
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import ProducerRef

log = logging.getLogger(__name__)
DECIDER = PRINCIPALS["decider"]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def run_admission(kafka: KafkaSettings, settings: DeciderSettings, stop: threading.Event,
                  clock: Clock, health: Health) -> None:
    """Stand for election; while owner, run the single writer of the quarantine ledger."""
    names = TopicNames(kafka.topic_prefix)
    election = Election(kafka, "admission", names.quarantine, settings.instance_id)
    producer = ProducerRef(stage="decider", instance=settings.instance_id)
    standby = health.part("admission")
    try:
        while not stop.is_set():
            if not election.tick():
                standby.beat()
                standby.ready("standing_by", "another instance is the quarantine's writer")
                stop.wait(0.2)
                continue
            log.info("admission: this instance is the quarantine's single writer")
            standby.not_ready("starting", "elected; reading the control log")
            control = new_control_view(kafka)
            # Never admit under default limits because the configuration was not read yet.
            while not control.wait_caught_up(10) and not stop.is_set():
                standby.beat()
                log.warning("admission: the control log is not read to its end yet; waiting")
            # Fence the previous owner first (init_transactions), then fold the ledger: folded
            # before, a last commit of the old owner in between would be missing from it.
            standby.beat(blocking_s=kafka.request_timeout_s)
            fenced = TransactionalProducer(
                kafka, DECIDER.transactional_id(kafka.topic_prefix, "admission"))
            loop = TransactionalLoop(
                kafka, stage="admission",
                group_id=DECIDER.group(kafka.topic_prefix, "admission-offsets"),
                producer=fenced, topics=[names.mail],
                handler=Admission(kafka, control, producer, clock, settings.helo_name),
                dead_letter_topic=names.deadletter, manual_assignment=True, health=health,
            )
            try:
                while not stop.is_set() and election.tick():
                    loop.run_once()
            except ProducerFenced:
                log.warning("admission: fenced by a newer single writer")
            finally:
                loop.close()
                control.close()
    finally:
        election.close()


def run_decisions(kafka: KafkaSettings, settings: DeciderSettings, stop: threading.Event,
                  clock: Clock, health: Health) -> None:
    names = TopicNames(kafka.topic_prefix)
    # Starting until the loop has its partitions; before it, the control log (30 s at most)
    # and the producer's first transaction.
    health.part("decider", blocking_s=30 + kafka.request_timeout_s)
    control = new_control_view(kafka)
    control.wait_caught_up(30)
    loop = TransactionalLoop(
        kafka, stage="decider", group_id=DECIDER.group(kafka.topic_prefix, "decider"),
        transactional_id=DECIDER.transactional_id(kafka.topic_prefix,
                                                  f"decider-{settings.instance_id}"),
        instance_id=f"decider-{settings.instance_id}",
        topics=[names.mail],
        handler=Decisions(names, control, ProducerRef(stage="decider",
                                                  instance=settings.instance_id), clock),
        dead_letter_topic=names.deadletter, health=health,
    )
    try:
        while not stop.is_set():
            loop.run_once()
    finally:
        loop.close()
        control.close()


def stopping_bound_s(settings: DeciderSettings, kafka: KafkaSettings) -> float:
    """How long a stop may take: the drain, a delivery begun at its end (a few SMTP
    commands, each within smtp_timeout_s), and the commit."""
    return settings.drain_timeout_s + 4 * settings.smtp_timeout_s + 2 * kafka.request_timeout_s


def run_decider(kafka: KafkaSettings, settings: DeciderSettings, stop: threading.Event,
                clock: Clock = utc_now) -> None:
    kafka = prepare_stage(kafka, "decider")
    health = Health(settings.health_stall_s)
    metrics = serve_health(settings.metrics_host, settings.metrics_port, health)
    from katagate.decider.apply_run import run_apply

    drain = Drain(settings.drain_timeout_s)
    parts = {
        "admission": lambda: run_admission(kafka, settings, stop, clock, health),
        "decider": lambda: run_decisions(kafka, settings, stop, clock, health),
        "apply": lambda: run_apply(kafka, settings, stop, clock, health, drain),
    }
    failed: list[BaseException] = []
    threads = [threading.Thread(target=restarting(name, part, stop, failed=failed), name=name,
                                daemon=True)
               for name, part in parts.items()]
    for thread in threads:
        thread.start()
    stop.wait()
    drain.begin()
    # Each part ends its batch and commits it; apply's last deliveries may begin up to the
    # drain's deadline and then take their SMTP commands' timeouts (docs/ARCHITECTURE.md,
    # "Stopping").
    bound = stopping_bound_s(settings, kafka)
    log.info("stopping: the batches in progress end and are committed (at most %.0f s; "
             "deliveries begin for %.0f s more)", bound, settings.drain_timeout_s)
    deadline = time.monotonic() + bound
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if unfinished := [thread.name for thread in threads if thread.is_alive()]:
        log.error("stopping: %s did not end within %.0f s; its uncommitted batch is read "
                  "again at the next start", ", ".join(unfinished), bound)
    if metrics is not None:
        metrics.close()
    if failed:
        raise RuntimeError(f"the decider stopped on a bug: {failed[0]!r}")
