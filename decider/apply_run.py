"""Apply's process part: the write-ahead producer, the handler and its transactional loop."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import datetime

from katagate.decider.admission import new_control_view
from katagate.decider.apply import Apply
from katagate.decider.settings import DeciderSettings
from katagate.eventlog.drain import Drain
from katagate.eventlog.health import Health
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.eventlog.write_ahead import WriteAhead
from katagate.schemas import ProducerRef

DECIDER = PRINCIPALS["decider"]


def run_apply(kafka: KafkaSettings, settings: DeciderSettings, stop: threading.Event,
              clock: Callable[[], datetime], health: Health, drain: Drain | None = None) -> None:
    names = TopicNames(kafka.topic_prefix)
    # Starting until the loop has its partitions; before it, the control log (30 s at most)
    # and the producer's first transaction.
    health.part("apply", blocking_s=30 + kafka.request_timeout_s)
    control = new_control_view(kafka)
    control.wait_caught_up(30)
    # Outcomes are written ahead; the loop's transaction holds the consumed offsets.
    with contextlib.ExitStack() as closing:  # in reverse: the loop first, the control last
        closing.callback(control.close)
        ahead = WriteAhead.for_stage(kafka, f"apply-ahead-{settings.instance_id}")
        closing.callback(ahead.close)
        handler = Apply(kafka, settings, control,
                        ProducerRef(stage="decider", instance=settings.instance_id), clock,
                        ahead, drain)
        closing.callback(handler.close)
        loop = TransactionalLoop(
            kafka, stage="apply", group_id=DECIDER.group(kafka.topic_prefix, "apply"),
            transactional_id=DECIDER.transactional_id(kafka.topic_prefix,
                                                      f"apply-{settings.instance_id}"),
            instance_id=f"apply-{settings.instance_id}",
            topics=[names.mail], handler=handler, dead_letter_topic=names.deadletter,
            # About 85 messages' deliveries (decision 0009): the batch ends with its slowest,
            # and a transaction and a fetch follow, so more per batch keeps the threads busy.
            batch_size=600, health=health,
        )
        closing.callback(loop.close)
        while not stop.is_set():
            loop.run_once()
