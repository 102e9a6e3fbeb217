"""The configuration for the console: `katagate.control` folded live in a background thread (a
page load reads memory, not the log), and each change written through `ControlSession`, which
fences other admin writers and decides on the latest state.

Reads wait until the fold has caught up with the log and with the console's own last write, so
a page shown after Apply shows what was applied."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict
from uuid import UUID

from katagate.admin.control_writer import ControlSession
from katagate.eventlog.errors import KafkaUnavailable
from katagate.eventlog.folded import FoldedTopic
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import ControlState, Event, evolve_control

log = logging.getLogger(__name__)



class Context(TypedDict):
    """What a command takes besides the state: who, when, and the new event's id."""

    actor: str
    now: datetime
    event_id: UUID


# A command gets the state and its context; it returns the event or raises InvalidCommand.
Decide = Callable[[ControlState, Context], Event]


@dataclass(frozen=True)
class Written:
    event: Event
    before: ControlState
    after: ControlState


class ControlService:
    def __init__(self, kafka: KafkaSettings, read_your_writes_s: float = 10.0) -> None:
        self._kafka = kafka
        self._wait_s = read_your_writes_s
        self._fold: FoldedTopic[ControlState] | None = None
        self._started = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written_version = 0
        self._version_lock = threading.Lock()
        # One write at a time from this console: two at once would fence each other (they
        # share the admin writers' transactional id) and one would be refused for nothing.
        self._write_lock = threading.Lock()

    def _ensure_started(self) -> FoldedTopic[ControlState]:
        with self._started:
            if self._fold is None:
                try:
                    self._fold = FoldedTopic(self._kafka, TopicNames(
                        self._kafka.topic_prefix).control, ControlState(), evolve_control)
                except Exception as exc:  # retried on the next request
                    raise KafkaUnavailable(f"reading the configuration: {exc}") from exc
                self._thread = threading.Thread(target=self._pump, args=(self._fold,),
                                                name="console-control-fold", daemon=True)
                self._thread.start()
            return self._fold

    def _pump(self, fold: FoldedTopic[ControlState]) -> None:
        while not self._stop.is_set():
            try:
                fold.pump(0.1)
            except Exception:  # keep serving the last state; the next pump may succeed
                log.exception("console: folding the control topic")
                self._stop.wait(1.0)

    def state(self) -> ControlState:
        """The configuration in force, including every change this console wrote."""
        fold = self._ensure_started()
        deadline = time.monotonic() + self._wait_s
        while True:
            value = fold.value
            if fold.caught_up and value.version >= self._written_version:
                return value
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"the configuration could not be read to its end within {self._wait_s:g} s")
            time.sleep(0.01)

    def write(self, actor: str, decide: Decide) -> Written:
        """Decide on the latest state and append the event; InvalidCommand writes nothing."""
        with self._write_lock, ControlSession(self._kafka) as session:
            before = session.state
            event = decide(before, Context(actor=actor, now=datetime.now(UTC),
                                           event_id=uuid.uuid4()))
            after = session.append([event])
        with self._version_lock:
            self._written_version = max(self._written_version, after.version)
        return Written(event, before, after)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._fold is not None:
            self._fold.close()
