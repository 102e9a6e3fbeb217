"""The scanning shell: submits admitted messages to the Central Node, polls every pending
scan's state in one request per interval, records verdicts, deletes finished scans.

State is rebuilt from `katagate.mail` at every partition assignment, and nothing is submitted
for a partition until it has caught up, so a restart never resubmits what the log already
settled. The rebuild begins where the oldest scan still live then began: every few seconds the
scanner commits that offset (a restore point) beside how far it has read, in its consumer
group; without one it begins at offset 0. Submissions are idempotent on the scan id (the
message id), so the one case a crash can repeat (submitted, not yet recorded) repeats
harmlessly.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from katagate.eventlog import restore_points
from katagate.eventlog.clients import new_consumer
from katagate.eventlog.errors import ConsumerFailed, KafkaUnavailable
from katagate.eventlog.fetching import FETCH_WHEN_DRAINED
from katagate.eventlog.health import Health
from katagate.eventlog.lag import LagMeter
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.raw import RawReaders, RawUnavailable, RawWant, prefetch
from katagate.eventlog.records import Outgoing
from katagate.eventlog.restore_points import RestorePoints
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.scanner.book import (
    Book,
    Ctx,
    Scan,
    cached_verdict_events,
    content_unavailable,
    poll_failure_events,
    submission_events,
    verdict_events,
)
from katagate.scanner.connection import destination
from katagate.scanner.control_view import ControlView
from katagate.scanner.identity import SensorIdentity
from katagate.scanner.kata_api import KataApi, Refused, Submitted
from katagate.scanner.lifecycle import ConnectionService
from katagate.scanner.metrics import (
    PENDING_SCANS,
    POLLS,
    SUBMISSIONS,
    TRANSACTIONS,
    VERDICT_CACHE_ENTRIES,
    VERDICT_CACHE_HITS,
    count_reply,
)
from katagate.scanner.readiness import allowance, report
from katagate.scanner.replies import DetectRecord
from katagate.scanner.settings import ScannerSettings
from katagate.scanner.transport import Endpoint, PinnedTransport
from katagate.schemas import (
    Event,
    MessageReceived,
    NodeAddress,
    ProducerRef,
    SchemaError,
    decode_event,
)

log = logging.getLogger(__name__)
SUBMISSIONS_PER_TRANSACTION = 50
# How often the restore points are committed; an older point is only a longer rebuild.
RESTORE_POINT_COMMIT_S = 5.0
# Failures that say the connection, not the message, is the problem: stop this round.
CONNECTION_REASONS = {"unreachable", "certificate_mismatch", "not_authorized", "busy"}


class ScanService:
    def __init__(
        self,
        kafka: KafkaSettings,
        scanner: ScannerSettings,
        identity: SensorIdentity,
        control: ControlView,
        lifecycle: ConnectionService | None = None,
        health: Health | None = None,
    ) -> None:
        self._part = (health or Health()).part("scanner", blocking_s=kafka.request_timeout_s)
        self._joined = False  # the group has given this member its partitions (maybe none)
        self._scanner = scanner
        self._identity = identity
        self._control = control
        self._lifecycle = lifecycle
        self._names = TopicNames(kafka.topic_prefix)
        self._ref = ProducerRef(stage="scanner", instance=scanner.instance_id)
        self.book = Book()
        self._catching_up: set[int] = set()
        self._caught_up_from: dict[int, tuple[int, float]] = {}  # start offset, monotonic
        self._folded: dict[int, int] = {}  # partition -> the next offset to fold
        self._points = RestorePoints()
        self._next_point_commit = 0.0
        self._own: set[UUID] = set()
        self._lag = LagMeter("scanner")
        self._producer = TransactionalProducer(kafka, PRINCIPALS["scanner"].transactional_id(
            kafka.topic_prefix, f"scanner-{scanner.instance_id}"))
        self._kafka = kafka
        # Each submitting thread reads raw chunks with its own reader; the transport keeps one
        # connection per thread already.
        self._readers = RawReaders(kafka)
        self._pool = ThreadPoolExecutor(max_workers=scanner.submit_concurrency,
                                        thread_name_prefix="kata-submit")
        self._consumer = new_consumer(kafka, {
            "group.id": PRINCIPALS["scanner"].group(kafka.topic_prefix, "scanner"),
            "client.id": scanner.instance_id,
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "enable.partition.eof": True, "session.timeout.ms": 10_000,
            # A restore point whose records retention removed: the earliest there is.
            "auto.offset.reset": "earliest",
            **FETCH_WHEN_DRAINED,
        })
        self._consumer.subscribe([self._names.mail], on_assign=self._assigned,
                                 on_revoke=self._revoked, on_lost=self._revoked)
        self._api_key: tuple[str, str | None] | None = None
        self._api: KataApi | None = None
        self._transport: PinnedTransport | None = None
        self._next_poll = 0.0

    # -- partition ownership -------------------------------------------------------------

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # State is the log: fold each newly owned partition from its restore point.
        self._joined = True
        starts = restore_points.committed_points(consumer, partitions,
                                                 self._kafka.request_timeout_s)
        for tp in partitions:
            tp.offset = starts.get(tp.partition, OFFSET_BEGINNING)
            self._catching_up.add(tp.partition)
            self._caught_up_from[tp.partition] = (tp.offset, time.monotonic())
        consumer.assign(partitions)

    def _revoked(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        gone = [tp.partition for tp in partitions]
        self._joined = self._joined and not gone  # rebalancing until assigned again
        self.book.forget_partitions(gone)
        self._catching_up.difference_update(gone)
        self._points.forget(gone)
        for partition in gone:
            self._folded.pop(partition, None)

    def _commit_restore_points(self, now: bool = False) -> None:
        if not now and time.monotonic() < self._next_point_commit:
            return
        self._next_point_commit = time.monotonic() + RESTORE_POINT_COMMIT_S
        offsets = []
        for partition, folded in self._folded.items():
            if partition in self._catching_up:
                continue
            point = self._points.point(partition, self.book.holds)
            offsets.append(TopicPartition(
                self._names.mail, partition, folded,
                restore_points.encode(folded if point is None else min(point, folded))))
        if offsets:
            try:
                if now:
                    self._consumer.commit(offsets=offsets, asynchronous=False)
                else:
                    self._consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:  # a rebalance under way, say: the next one will do
                log.info("scanner: restore points not committed: %s", exc)

    @property
    def ready(self) -> bool:
        return bool(self._consumer.assignment()) and not self._catching_up

    # -- the loop ------------------------------------------------------------------------

    def step(self) -> None:
        self._pump()
        self._part.beat(blocking_s=2 * self._scanner.request_timeout_s)  # then KATA requests
        report(self._part.health, self._joined, len(self._consumer.assignment()),
               len(self._catching_up), self._control.view)
        self._commit_restore_points()
        PENDING_SCANS.set(len(self.book))
        if self.ready:
            self._reuse_verdicts(datetime.now(UTC))
        # Only to a node checked Connected whose key is pinned: right after a change of address
        # the state still reads Connected for the old node, and the new one is not trusted yet.
        pinned = destination(self._control.view)
        if not self.ready or pinned is None:
            return
        node, pin = pinned
        api = self._api_for(str(node.address), node.port, pin)
        ctx = Ctx(datetime.now(UTC), self._ref, node, self._identity.sensor_id)
        self._submit_due(api, ctx)
        self._poll_if_due(api, node)

    def _poll_if_due(self, api: KataApi, node: NodeAddress) -> None:
        if time.monotonic() < self._next_poll or not self.book.awaiting_verdict():
            return
        self._next_poll = time.monotonic() + self._control.view.settings.poll_interval_s
        self._poll(api, Ctx(datetime.now(UTC), self._ref, node, self._identity.sensor_id))

    def _pump(self, budget: int = 2000) -> None:
        for _ in range(budget):
            message = self._consumer.poll(0.05)
            if message is None:
                self._lag.measure(self._consumer)
                return
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._caught_up(message.partition() or 0, message.offset() or 0)
                elif error.fatal() or error.code() == KafkaError._FATAL:
                    raise ConsumerFailed(f"scanner: {error}")
                else:
                    log.warning("scanner: %s", error)
                continue
            try:
                event = decode_event(message.value() or b"")
            except SchemaError as exc:
                log.warning("scanner: skipping %s@%s: %s", message.partition(),
                            message.offset(), exc)
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            self._folded[partition] = offset + 1
            self._lag.processed(message.timestamp()[1])
            if event.event_id in self._own:
                self._own.discard(event.event_id)
                continue
            self.book.evolve(event, partition)
            if isinstance(event, MessageReceived):
                self._points.began(partition, event.message_id, offset)
        self._lag.measure(self._consumer)

    def _caught_up(self, partition: int, end: int) -> None:
        if partition not in self._catching_up:
            return
        self._catching_up.discard(partition)
        self._folded.setdefault(partition, end)
        start, since = self._caught_up_from.pop(partition, (OFFSET_BEGINNING, time.monotonic()))
        log.info("scanner: partition %d rebuilt from %s to offset %d in %.1f s", partition,
                 "its start" if start == OFFSET_BEGINNING else f"offset {start}", end,
                 time.monotonic() - since)

    def _api_for(self, address: str, port: int, pin: str | None) -> KataApi:
        key = (f"{address}:{port}", pin)
        if self._api is None or self._api_key != key:
            if self._transport is not None:
                self._transport.close()
            self._transport = PinnedTransport(Endpoint(address, port), self._identity, pin,
                                              self._scanner.request_timeout_s)
            self._api = KataApi(self._transport, self._identity.sensor_id,
                                self._scanner.instance_id)
            self._api_key = key
        return self._api

    def _reuse_verdicts(self, now: datetime) -> None:
        """Verdicts for due messages whose content KATA judged already: no Central Node
        needed, so this runs whatever the connection's state."""
        ttl = self._control.view.settings.verdict_cache_ttl_s
        reuse = self.book.reuse_plan(self.book.due_for_submit(now), now, ttl).reuse
        for start in range(0, len(reuse), SUBMISSIONS_PER_TRANSACTION):
            batch = reuse[start:start + SUBMISSIONS_PER_TRANSACTION]
            if not self._record(cached_verdict_events(self.book, batch, now, self._ref)):
                break
            VERDICT_CACHE_HITS.inc(len(batch))
        self.book.expire_cache(now, ttl)
        VERDICT_CACHE_ENTRIES.set(len(self.book.cache))

    def _submit_due(self, api: KataApi, ctx: Ctx) -> None:
        room = self._scanner.max_outstanding_scans - len(self.book.awaiting_verdict())
        ttl = self._control.view.settings.verdict_cache_ttl_s
        due = self.book.due_for_submit(ctx.now)
        # Content at KATA already waits for that scan's verdict (recorded at a next step).
        chosen = set(self.book.reuse_plan(due, ctx.now, ttl).submit)
        due = [s for s in due if s.message_id in chosen][:max(0, room)]
        # Submitted concurrently, recorded a batch per transaction: a transaction costs more
        # than a submission. A crash before the record only means submitting again under the
        # same scanId, which KATA takes as the same scan.
        for start in range(0, len(due), SUBMISSIONS_PER_TRANSACTION):
            self._control.pump(0)  # an address changed under a long backlog stops it here
            still = destination(self._control.view)
            if still is None or still[0] != ctx.central_node:
                break
            batch = due[start:start + SUBMISSIONS_PER_TRANSACTION]
            self._part.beat(blocking_s=allowance(len(batch), self._scanner))
            # Messages received together lie together in the raw topic: one pass reads them.
            ahead = prefetch(self._readers.mine(), [
                (RawWant(s.raw.topic, s.raw.partition, s.raw.offsets, s.raw_key, s.sha256),
                 s.size) for s in batch if s.raw is not None])
            outcomes = list(self._pool.map(
                self._read_and_submit, [api] * len(batch), batch,
                [ahead.get(scan.raw_key) for scan in batch]))
            recorded: list[Event] = []
            stop = False
            for scan, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, RawUnavailable):
                    recorded += content_unavailable(scan, str(outcome), ctx)
                    continue
                SUBMISSIONS.labels(
                    "ok" if not isinstance(outcome, Refused) else outcome.reason).inc()
                count_reply(outcome)
                recorded += submission_events(scan, outcome, ctx)
                if isinstance(outcome, Refused) and outcome.reason in CONNECTION_REASONS:
                    stop = True
                    if self._lifecycle is not None and outcome.reason != "busy":
                        self._lifecycle.request_check()
            self._record(recorded)
            if stop:
                break
            # A long backlog of submissions must not hold back the verdicts already waiting.
            self._poll_if_due(api, ctx.central_node)

    def _read_and_submit(self, api: KataApi, scan: Scan,
                         content: bytes | RawUnavailable | None
                         ) -> Submitted | Refused | RawUnavailable:
        """Submit `content`, read ahead; or, when it was not (a large message), read it now."""
        assert scan.raw is not None  # noqa: S101 - only received messages are admitted
        if content is None:
            try:
                content = self._readers.mine().read(scan.raw.topic, scan.raw.partition,
                                              scan.raw.offsets, scan.raw_key, scan.sha256)
            except RawUnavailable as exc:
                return exc
        if isinstance(content, RawUnavailable):
            return content
        return api.submit(scan.message_id, content)

    def _poll(self, api: KataApi, ctx: Ctx) -> None:
        polled = api.poll()
        count_reply(polled)
        if isinstance(polled, Refused):
            POLLS.labels(polled.reason).inc()
            log.warning("scanner: state poll refused: %s %s", polled.reason, polled.detail)
            if self._lifecycle is not None:
                self._lifecycle.request_check()
            self._record(poll_failure_events(self.book, polled, ctx))
            return
        POLLS.labels("ok").inc()
        self.book.poll_succeeded()
        ours = {s.scan_id for s in polled.scans if s.scan_id in self.book.scans}
        detected = {s.scan_id for s in polled.scans if s.state == "detect" and s.scan_id in ours}
        detects = self._detects_for(api, detected) if detected else []
        events = verdict_events(self.book, polled.scans, detects, ctx)
        if not self._record(events):
            return
        # Finished scans are deleted on the Central Node, as many at a time as submissions:
        # one by one, a poll that brought hundreds of verdicts stalled the loop for seconds.
        finished = [scan_id for event in events if (scan_id := getattr(event, "scan_id", ""))]
        list(self._pool.map(api.delete, finished))

    def _detects_for(self, api: KataApi, scan_ids: set[str]) -> list[DetectRecord]:
        found: list[DetectRecord] = []
        token: str | None = None
        for _ in range(100):  # bounded paging
            page = api.detects(token)
            if isinstance(page, Refused):
                log.warning("scanner: detects refused: %s %s", page.reason, page.detail)
                break
            found += [d for d in page.detects if d.scan_id in scan_ids]
            token = page.token
            if token is None:
                break
        return found

    def _record(self, events: list[Event]) -> bool:
        if not events:
            return True
        try:
            self._producer.begin()
            self._producer.produce(Outgoing.event(self._names.mail, e) for e in events)
            self._producer.commit()
        except KafkaUnavailable as exc:
            TRANSACTIONS.labels("scans", "failed").inc()
            log.warning("scanner: recording %d events failed (%s); they will be redone",
                        len(events), exc)
            return False
        TRANSACTIONS.labels("scans", "committed").inc()
        for event in events:
            self._own.add(event.event_id)
            message_id = getattr(event, "message_id", "")
            scan = self.book.scans.get(message_id)
            self.book.evolve(event, scan.partition if scan else 0)
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._pool.shutdown(wait=True)
        self._readers.close()
        self._commit_restore_points(now=True)  # the next owner starts from the latest
        self._consumer.close()
        self._producer.close()
