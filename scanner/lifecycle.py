"""The connection lifecycle shell: one owner at a time checks the Central Node and records what
it sees as control events.

Ownership is the assignment of the control topic's single partition in a consumer group; the
owner writes with one fixed transactional.id, so a new owner's producer fences a previous owner
that has not noticed yet — two owners can never both commit.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

from katagate.eventlog.election import Election
from katagate.eventlog.errors import KafkaUnavailable
from katagate.eventlog.health import Health
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import ProducerFenced, TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.restart import KAFKA_TROUBLE
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.scanner.connection import (
    Check,
    ConnectionView,
    Context,
    announce,
    decide,
    next_check_in,
    sensor_key_events,
)
from katagate.scanner.control_view import ControlView
from katagate.scanner.identity import SensorIdentity
from katagate.scanner.kata_api import KataApi, answers_as_kata
from katagate.scanner.metrics import TRANSACTIONS
from katagate.scanner.replies import error_text
from katagate.scanner.settings import ScannerSettings
from katagate.scanner.transport import Endpoint, PinMismatch, PinnedTransport, Unreachable
from katagate.schemas import Event, ProducerRef

log = logging.getLogger(__name__)


def _ids() -> Iterator[UUID]:
    while True:
        yield uuid4()


def check_central_node(
    view: ConnectionView, identity: SensorIdentity, timeout_s: float
) -> Check | None:
    """One request to the Central Node (the first detects page), the key checked against the pin
    first; whether the reply had the API's own shape decides whether a first pin may follow."""
    target = view.target
    if target is None:
        return None
    transport = PinnedTransport(
        Endpoint(str(target.address), target.port), identity, view.effective_pin, timeout_s
    )
    try:
        outcome = transport.request("GET", KataApi(transport, identity.sensor_id).probe_path())
    finally:
        transport.close()
    if isinstance(outcome, Unreachable):
        return Check(target, None, None, outcome.detail)
    if isinstance(outcome, PinMismatch):
        return Check(
            target, outcome.observed, None,
            f"the Central Node's key {outcome.observed} is not the pinned {outcome.pinned}",
            mismatch=True,
        )
    return Check(target, outcome.fingerprint, outcome.status, error_text(outcome.body),
                 genuine=answers_as_kata(outcome), not_after=outcome.not_after)


class ConnectionService:
    def __init__(
        self,
        kafka: KafkaSettings,
        scanner: ScannerSettings,
        identity: SensorIdentity,
        control: ControlView,
        health: Health | None = None,
    ) -> None:
        self._part = (health or Health()).part("kata-lifecycle")
        self._kafka = kafka
        self._scanner = scanner
        self._identity = identity
        self._control = control
        self._topic = TopicNames(kafka.topic_prefix).control
        self._producer_ref = ProducerRef(stage="scanner", instance=scanner.instance_id)
        self._election = Election(
            kafka, "scanner-lifecycle", TopicNames(kafka.topic_prefix).control,
            scanner.instance_id,
        )
        self._producer: TransactionalProducer | None = None
        self._next_check = 0.0
        self._failures = 0
        self._wake = threading.Event()

    def request_check(self) -> None:
        """A scan request failed: check the connection now rather than at the next interval."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                # A step may wait on the Central Node, then on Kafka, each call bounded.
                self._part.beat(blocking_s=self._scanner.request_timeout_s
                                + self._kafka.request_timeout_s)
                self.step()
                self._part.ready("owner" if self._election.owner else "standing_by")
                self._wake.wait(0.1)
        finally:
            self.close()

    def step(self) -> None:
        self._control.pump(0.05)
        self._election.tick()
        if not self._election.owner:
            if self._producer is not None:
                log.info("no longer the lifecycle owner")
                self._producer = None
            return
        if not self._control.caught_up:
            return
        try:
            if self._producer is None:
                # Fences whichever instance owned the lifecycle before.
                self._producer = TransactionalProducer(
                    self._kafka, PRINCIPALS["scanner"].transactional_id(
                        self._kafka.topic_prefix, "scanner-lifecycle"))
                log.info("this instance is now the lifecycle owner")
                self._next_check = 0.0
            self._act(self._producer)
        except ProducerFenced:
            log.warning("another scanner instance took the lifecycle over")
            self._producer = None
        except KAFKA_TROUBLE as exc:
            # Kafka down or back from a crash: try again, with a new producer if the old one
            # is past saving (its successor fences it).
            log.warning("recording the connection state failed (%s); retrying", exc)
            if not isinstance(exc, KafkaUnavailable):
                self._producer = None
            self._next_check = time.monotonic() + self._scanner.recheck_s

    def _act(self, producer: TransactionalProducer) -> None:
        view = self._control.view
        key_events = sensor_key_events(
            view, self._identity.sensor_id, self._identity.fingerprint,
            self._identity.certificate_pem, self._context(),
        )
        if key_events:
            self._commit(producer, key_events)
        moved = view.target != view.central_node  # a new address or port: check it now
        if time.monotonic() < self._next_check and not self._wake.is_set() and not moved:
            return
        self._wake.clear()
        connecting = announce(view, self._context())
        if connecting:  # a new node: Connecting before anything else reaches it
            self._commit(producer, connecting)
            view = self._control.view
        check = check_central_node(view, self._identity, self._scanner.request_timeout_s)
        view = self._control.view  # settings may have moved on while we waited for the reply
        events = decide(view, check, self._context(), self._scanner.require_manual_pin)
        if events:
            self._commit(producer, events)
        healthy = self._control.view.state in ("connected", "not_configured")
        self._failures = 0 if healthy else self._failures + 1
        delay = next_check_in(self._control.view, self._failures, self._scanner.recheck_s)
        self._next_check = time.monotonic() + delay * random.uniform(0.9, 1.1)  # noqa: S311

    def _context(self) -> Context:
        return Context(datetime.now(UTC), self._producer_ref, _ids())

    def _commit(self, producer: TransactionalProducer, events: list[Event]) -> None:
        try:
            producer.begin()
            producer.produce(Outgoing.event(self._topic, event) for event in events)
            producer.commit()
        except Exception:
            TRANSACTIONS.labels("lifecycle", "failed").inc()
            raise
        TRANSACTIONS.labels("lifecycle", "committed").inc()
        self._control.apply_own(events)
        for event in events:
            log.info("%s %s", event.type, event.model_dump(exclude={"certificate_pem"}))

    def close(self) -> None:
        self._election.close()
