"""The scans this instance is responsible for, folded from `katagate.mail`, and the pure
decisions on what to submit and what a submission or a poll means.

Deterministic: ids come from the message id and the step (a retried step after a crash makes
the same event), time comes in as an argument.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from katagate.scanner.kata_api import Refused, Submitted
from katagate.scanner.replies import FINAL_STATES, DetectRecord, ScanStatus
from katagate.scanner.verdict_cache import Cached, Candidate, Plan, VerdictCache, plan
from katagate.schemas import (
    ActionDecided,
    Detect,
    Event,
    ForcedDelete,
    ForcedRelease,
    LateVerdictReceived,
    MessageReceived,
    NodeAddress,
    ProducerRef,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineReleased,
    RawLocation,
    ScanFailed,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
)
from katagate.schemas.ids import SCANS, step_id

MAX_BACKOFF_S = 300.0


@dataclass(frozen=True)
class Scan:
    message_id: str
    partition: int
    raw: RawLocation | None = None
    sha256: str | None = None
    size: int = 0
    admitted: bool = False
    deadline_at: datetime | None = None
    submitted: bool = False
    attempts: int = 0
    retry_at: datetime | None = None
    # Set once the message went on without a verdict; a verdict then is a late one.
    late_after: str | None = None
    correlation_id: uuid.UUID | None = None
    # A failed poll is recorded once per scan until a poll succeeds again.
    poll_failed: bool = False
    # The verdict cache's key (None in events written before it), and the split message this
    # is a copy of (its first id), else its own id.
    content_key: str | None = None
    group: str = ""

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.message_id, self.content_key, self.group or self.message_id)

    @property
    def raw_key(self) -> str:
        """The id the raw chunks are keyed by: a copy of a split message shares the first's."""
        return self.raw.key if self.raw is not None and self.raw.key else self.message_id


class Book:
    """Live scans by message id. Entries leave when their verdict is recorded."""

    def __init__(self) -> None:
        self.scans: dict[str, Scan] = {}
        self.cache = VerdictCache()

    def __len__(self) -> int:
        return len(self.scans)

    def evolve(self, event: Event, partition: int) -> None:
        m = getattr(event, "message_id", None)
        if m is None:
            return
        scan = self.scans.get(m)
        match event:
            case MessageReceived():
                self.scans[m] = Scan(
                    m, partition, raw=event.raw, sha256=event.sha256, size=event.size,
                    correlation_id=event.correlation_id or event.event_id,
                    content_key=event.content_sha256,
                    group=event.copies[0] if event.copies else m,
                )
            case QuarantineAdmitted() if scan is not None:
                self.scans[m] = replace(scan, admitted=True, deadline_at=event.deadline_at)
            case QuarantineDenied():
                self.scans.pop(m, None)
            case ScanSubmitted() if scan is not None:
                self.scans[m] = replace(scan, submitted=True, retry_at=None)
            case ScanFailed() if scan is not None and scan.submitted:
                self.scans[m] = replace(scan, attempts=event.attempt, poll_failed=True)
            case ScanFailed() if scan is not None:
                if event.final:
                    self.scans.pop(m, None)
                else:
                    self.scans[m] = replace(
                        scan, attempts=event.attempt,
                        retry_at=event.occurred_at + backoff(event.attempt),
                    )
            case ScanTimedOut() if scan is not None:
                self._went_on(m, scan, "timeout")
            case ForcedRelease() if scan is not None:
                self._went_on(m, scan, "forced_release")
            case ForcedDelete() if scan is not None:
                self._went_on(m, scan, "deleted_by_admin")
            case ActionDecided() | QuarantineReleased() if scan is not None:
                self._went_on(m, scan, "action_applied")
            case VerdictReceived() | LateVerdictReceived():
                if scan is not None and scan.content_key is not None and not getattr(
                        event, "cached_from", None) and event.state in ("detect", "not_detected"):
                    self.cache.remember(scan.content_key, Cached(
                        m, scan.partition, scan.candidate.group,
                        "detect" if event.state == "detect" else "not_detected",
                        tuple(event.detects), event.occurred_at))
                self.scans.pop(m, None)

    def _went_on(self, m: str, scan: Scan, after: str) -> None:
        if not scan.submitted:
            # Never submitted: nothing will ever answer for it.
            self.scans.pop(m, None)
        elif scan.late_after is None:
            self.scans[m] = replace(scan, late_after=after)

    def holds(self, message_id: str) -> bool:
        """Whether the message's scan is still live. Events of a message whose scan is not
        change nothing (`evolve`), so a rebuild may begin at the oldest live scan's
        `MessageReceived` (`eventlog.restore_points`)."""
        return message_id in self.scans or self.cache.holds(message_id)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self.scans = {m: s for m, s in self.scans.items() if s.partition not in gone}
        self.cache.forget_partitions(gone)

    def due_for_submit(self, now: datetime) -> list[Scan]:
        due = [
            s for s in self.scans.values()
            if s.admitted and not s.submitted and s.late_after is None
            and (s.retry_at is None or s.retry_at <= now)
        ]
        return sorted(due, key=lambda s: s.deadline_at or now)

    def awaiting_verdict(self) -> list[Scan]:
        return [s for s in self.scans.values() if s.submitted]

    def reuse_plan(self, due: list[Scan], now: datetime, ttl_s: int) -> Plan:
        """Which of the scans due reuse a verdict, wait for the same content's scan, or are
        submitted (scanner/verdict_cache.py)."""
        if not due:  # the common case: no O(scans) pass over what waits at KATA
            return Plan([], [], [])
        return plan(self.cache, [s.candidate for s in due],
                    [s.candidate for s in self.awaiting_verdict()], now, ttl_s)

    def expire_cache(self, now: datetime, ttl_s: int) -> None:
        wanted = {s.content_key for s in self.scans.values() if s.content_key is not None}
        self.cache.expire(now, ttl_s, wanted)

    def poll_succeeded(self) -> None:
        for m, scan in self.scans.items():
            if scan.poll_failed:
                self.scans[m] = replace(scan, poll_failed=False)


def backoff(attempt: int) -> timedelta:
    return timedelta(seconds=min(MAX_BACKOFF_S, 2.0 ** min(attempt, 20)))


@dataclass(frozen=True)
class Ctx:
    now: datetime
    producer: ProducerRef
    central_node: NodeAddress
    sensor_id: str


def submission_events(scan: Scan, outcome: Submitted | Refused, ctx: Ctx) -> list[Event]:
    common = {
        "occurred_at": ctx.now, "producer": ctx.producer, "message_id": scan.message_id,
        "scan_id": scan.message_id, "correlation_id": scan.correlation_id,
    }
    if isinstance(outcome, Submitted):
        return [ScanSubmitted(
            event_id=step_id(SCANS, scan.message_id, "submitted"), central_node=ctx.central_node,
            sensor_id=ctx.sensor_id, **common,
        )]
    attempt = scan.attempts + 1
    retry = backoff(attempt)
    if outcome.retry_after_s is not None:
        retry = max(retry, timedelta(seconds=min(outcome.retry_after_s, MAX_BACKOFF_S)))
    return [ScanFailed(
        event_id=step_id(SCANS, scan.message_id, f"failed-{attempt}"), reason=outcome.reason,
        detail=outcome.detail[:1000], attempt=attempt, final=outcome.final, **common,
    )]


def cached_verdict_events(book: Book, reuse: list[tuple[str, Cached]], now: datetime,
                          producer: ProducerRef) -> list[Event]:
    """A verdict for each message taking another scan's: recorded as this message's
    `scan.verdict`, naming the scan it came from."""
    events: list[Event] = []
    for message_id, cached in reuse:
        scan = book.scans[message_id]
        events.append(VerdictReceived(
            event_id=step_id(SCANS, message_id, "verdict"), occurred_at=now,
            producer=producer, message_id=message_id, scan_id=message_id,
            correlation_id=scan.correlation_id, state=cached.state,
            detects=list(cached.detects), cached_from=cached.scan_id,
        ))
    return events


def content_unavailable(scan: Scan, detail: str, ctx: Ctx) -> list[Event]:
    attempt = scan.attempts + 1
    return [ScanFailed(
        event_id=step_id(SCANS, scan.message_id, f"failed-{attempt}"), occurred_at=ctx.now,
        producer=ctx.producer, message_id=scan.message_id, scan_id=scan.message_id,
        correlation_id=scan.correlation_id, reason="content_unavailable",
        detail=detail[:1000], attempt=attempt, final=True,
    )]


def poll_failure_events(book: Book, refused: Refused, ctx: Ctx) -> list[Event]:
    """A failed poll leaves every awaiting scan without news: record why, once per streak."""
    events: list[Event] = []
    for scan in book.awaiting_verdict():
        if scan.poll_failed:
            continue
        attempt = scan.attempts + 1
        events.append(ScanFailed(
            event_id=step_id(SCANS, scan.message_id, f"poll-failed-{attempt}"), occurred_at=ctx.now,
            producer=ctx.producer, message_id=scan.message_id, scan_id=scan.message_id,
            correlation_id=scan.correlation_id, reason=refused.reason,
            detail=f"state poll: {refused.detail}"[:1000], attempt=attempt, final=False,
        ))
    return events


def verdict_events(
    book: Book, statuses: Iterable[ScanStatus], detects: Iterable[DetectRecord], ctx: Ctx
) -> list[Event]:
    """Verdicts for our scans that reached a final state; unknown scan ids are not ours."""
    by_scan: dict[str, list[Detect]] = {}
    for record in detects:
        by_scan.setdefault(record.scan_id, []).append(
            Detect(type=record.kind, name=record.name, details=record.details)
        )
    events: list[Event] = []
    for status in statuses:
        scan = book.scans.get(status.scan_id)
        if scan is None or not scan.submitted or status.state not in FINAL_STATES:
            continue
        found = by_scan.get(scan.message_id, []) if status.state == "detect" else []
        common = {
            "occurred_at": ctx.now, "producer": ctx.producer, "message_id": scan.message_id,
            "scan_id": scan.message_id, "correlation_id": scan.correlation_id,
            "state": status.state, "detects": found,
        }
        if scan.late_after is None:
            events.append(VerdictReceived(
                event_id=step_id(SCANS, scan.message_id, "verdict"), **common))
        else:
            events.append(LateVerdictReceived(
                event_id=step_id(SCANS, scan.message_id, "late-verdict"), after=scan.late_after,
                **common,
            ))
    return events
