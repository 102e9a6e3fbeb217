"""Run a stage's part again when Kafka fails it.

Whatever Kafka does to a part — a broker crash mid-transaction, a fenced producer, a consumer
fenced when the group coordinator comes back, a timed-out read of committed offsets — the part
is rebuilt from scratch after a pause: a new consumer and producer, its state re-read from the
log, exactly as after a process restart (which the crash tests prove). A part that just dies
would leave a process that looks alive and moves no mail.

Anything else is a bug: it is logged and stops the whole stage, so that a supervisor or an
operator sees a dead process rather than a silent one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import KafkaException

from katagate.eventlog.errors import KatagateError

log = logging.getLogger(__name__)

KAFKA_TROUBLE = (KatagateError, KafkaException)


def restarting(name: str, part: Callable[[], None], stop: threading.Event,
               pause_s: float = 2.0, failed: list[BaseException] | None = None
               ) -> Callable[[], None]:
    """A thread target running `part` until `stop`; `failed` collects a bug that stopped it."""

    def run() -> None:
        while not stop.is_set():
            try:
                part()
                return
            except KAFKA_TROUBLE as exc:
                log.warning("%s stopped (%s); restarting in %.0f s", name, exc, pause_s)
                stop.wait(pause_s)
            except Exception as exc:
                log.exception("%s failed; stopping the stage", name)
                if failed is not None:
                    failed.append(exc)
                stop.set()
                return
    return run
