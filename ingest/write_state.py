"""What the durable writer (ingest/writer.py) knows of a message on its way: the outcome a
session waits for, and the state its two threads share while the writes are acknowledged."""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from enum import Enum

from confluent_kafka import KafkaError, Producer

from katagate.eventlog.raw import Chunked
from katagate.ingest.received import Accepted
from katagate.schemas import MessageReceived


class Outcome(Enum):
    DURABLE = "durable"  # both writes acknowledged by every in-sync replica
    UNAVAILABLE = "kafka_unavailable"  # Kafka refused or did not answer
    TIMEOUT = "commit_timeout"  # not durable within the bound


@dataclass(frozen=True)
class Batching:
    # One turn of the writer takes at most this many messages, or bytes, from the sessions;
    # MessageReceived writes of messages whose chunks are durable go between turns.
    max_messages: int = 64
    max_bytes: int = 32 * 1024 * 1024


@dataclass
class Pending:
    accepted: Accepted
    deadline: float  # time.monotonic(): no write of this message begins after it
    gives_up: float  # when the session stops waiting and answers 451
    submitted: float
    future: concurrent.futures.Future[Outcome]
    finished: bool = False  # its outcome is counted (once, whichever thread comes first)


@dataclass
class InFlight:
    """A message between its first write and its outcome; the callbacks fill it in."""

    pending: Pending
    chunked: Chunked
    located: list[tuple[int, int] | None]
    producer: Producer
    raw_left: int
    events: list[MessageReceived] = field(default_factory=list)
    events_left: int = 0
    error: KafkaError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # callbacks vs the writer

    def settle(self, error: KafkaError | None, count: int = 1) -> bool:
        """`count` writes of the current step ended (with `error`, if any): True when it was
        the step's last."""
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            if self.raw_left:
                self.raw_left -= count
                return self.raw_left == 0
            self.events_left -= count
            return self.events_left == 0
