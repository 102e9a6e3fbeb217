"""Appending administrators' control events so that each decides on the latest state.

Every admin writer shares one transactional.id and initialises its producer *before* it reads
the state. Initialising fences any other admin writer that read earlier and has not committed
yet (its commit then fails and nothing of it is written), and waits until one that is
committing has finished, so the fold that follows includes it. Two commands can therefore
never both commit on the same state: configuration versions stay unique and increasing, and a
refusal such as "duplicate rule id" is judged against what is really in force.

A commit returns before the broker has written the transaction's markers, so `append` also
waits until read_committed readers can see the events: when a command has succeeded, the next
`settings show` (and ingest, and the decider) sees its change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from types import TracebackType

from confluent_kafka import KafkaError, KafkaException

from katagate.admin.control_reader import read_control
from katagate.eventlog.clients import new_reader
from katagate.eventlog.errors import KafkaUnavailable, KatagateError
from katagate.eventlog.principals import CONTROL_WRITER
from katagate.eventlog.producer import ProducerFenced, TransactionalProducer, is_fenced
from katagate.eventlog.read_to_end import watermarks
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import ControlState, Event, evolve_control

log = logging.getLogger(__name__)


class ConcurrentChange(KatagateError):
    """Another administrator's command took over while this one ran: nothing was written."""


def _kafka_error(exc: BaseException) -> KafkaError | None:
    """The Kafka error behind `exc`. A fatal error raised while librdkafka serves delivery
    callbacks reaches Python as a SystemError whose cause is the KafkaException."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaException) and isinstance(seen.args[0], KafkaError):
            return seen.args[0]
        seen = seen.__cause__ or seen.__context__
    return None


def admin_transactional_id(prefix: str) -> str:
    """Shared by every writer of the control topic, the console's included (see above)."""
    return f"{prefix}-{CONTROL_WRITER}"


class ControlSession:
    """Open (fencing other admin writers), read `state`, then `append` the decided events once."""

    def __init__(self, settings: KafkaSettings, timeout_s: float | None = None) -> None:
        self._settings = settings
        self._topic = TopicNames(settings.topic_prefix).control
        self._producer = TransactionalProducer(
            settings, admin_transactional_id(settings.topic_prefix))
        try:
            self.state: ControlState = read_control(settings, timeout_s)
        except BaseException:
            self._producer.close()
            raise

    def append(self, events: Sequence[Event]) -> ControlState:
        """Write the events in one transaction; return the state they lead to."""
        try:
            self._producer.begin()
            located = self._producer.produce_located(
                [Outgoing.event(self._topic, e) for e in events])
            self._producer.commit()
        except ProducerFenced as exc:
            raise self._taken_over() from exc
        except (KafkaException, SystemError) as exc:
            error = _kafka_error(exc)
            if error is None:
                raise
            if is_fenced(error):
                raise self._taken_over() from exc
            raise KafkaUnavailable(f"writing to {self._topic}: {error}") from exc
        if located:
            self._await_visible(*max(located))
        state = self.state
        for event in events:
            state = evolve_control(state, event)
        return state

    def _await_visible(self, partition: int, offset: int) -> None:
        """Wait until the last stable offset (what read_committed readers see) passes `offset`."""
        consumer = new_reader(self._settings, "visible")
        deadline = time.monotonic() + self._settings.request_timeout_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    _low, stable = watermarks(consumer, (self._topic, partition), left)
                except KafkaUnavailable as exc:
                    log.debug("%s", exc)
                    break
                if stable > offset:
                    return
                time.sleep(0.02)
        finally:
            consumer.close()
        # Committed all the same: readers will see it once the broker writes the markers.
        log.warning("%s offset %d committed but not yet visible to readers", self._topic, offset)

    @staticmethod
    def _taken_over() -> ConcurrentChange:
        return ConcurrentChange("another administrator changed the configuration while this "
                                "command ran; nothing was written: run it again")

    def close(self) -> None:
        self._producer.close()

    def __enter__(self) -> ControlSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
