"""Verification: recompute every audited chain from offset 0 and check every signed checkpoint.

The pure part (`check_signatures`, `check_continuity`, `RangeChecker`) needs no broker; `verify`
reads the audit topic and the audited partitions once, streaming.

Each checkpoint is checked on its own range, starting from the previous head it signs, and the
continuity check ties each checkpoint to the one before it (the first to 32 zero bytes): when
both pass everywhere, the whole chain from offset 0 is what was signed, and a failure names the
range it is in.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from katagate.audit.chain import ZERO_HEAD, LogRecord, record_bytes
from katagate.audit.checkpoint import Checkpoint, CheckpointError, decode, signature_valid
from katagate.audit.keys import key_id
from katagate.audit.reading import AUDITED, audited_topics, from_message, new_consumer
from katagate.eventlog.read_to_end import partitions, read_to_end, watermarks
from katagate.eventlog.settings import KafkaSettings

# Ranges read as in prose: "katagate.mail[2] offsets 120 to 180" with an en dash.
DASH = "\N{EN DASH}"


@dataclass(frozen=True)
class Finding:
    """One line of the report; the fields say where, for tools and tests."""

    message: str
    topic: str | None = None
    partition: int | None = None
    first_offset: int | None = None
    last_offset: int | None = None
    checkpoint: int | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Entry:
    """A checkpoint with its place in the audit topic: `index` counts audit records from 0."""

    index: int
    audit_offset: int
    checkpoint: Checkpoint


@dataclass(frozen=True)
class RangeResult:
    entry: Entry
    ok: bool


@dataclass
class Report:
    failures: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    ranges: list[RangeResult] = field(default_factory=list)
    records: int = 0
    checkpoints: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        verdict = "ok" if self.ok else f"TAMPERED ({len(self.failures)} findings)"
        head = (f"audit verify: {verdict}: {self.records} records, {self.checkpoints} checkpoints,"
                f" {self.seconds:.2f} s")
        return [head, *(f"FAIL {f}" for f in self.failures), *(f"note {n}" for n in self.notes)]


def _range(label: str, cp: Checkpoint) -> str:
    return f"{label} offsets {cp.first_offset}{DASH}{cp.last_offset}"


def check_signatures(
    entries: Iterable[Entry], public_key: Ed25519PublicKey, names: dict[str, str]
) -> tuple[list[Entry], list[Finding]]:
    """The entries signed by `public_key`, and a finding for every other one."""
    expected = key_id(public_key)
    valid: list[Entry] = []
    findings: list[Finding] = []
    for entry in entries:
        cp = entry.checkpoint
        label = f"{names.get(cp.topic, cp.topic)}[{cp.partition}]"
        if signature_valid(entry.checkpoint, public_key):
            valid.append(entry)
            continue
        why = "" if cp.key_id == expected else f" (key id {cp.key_id[:23]}… is not the audit key)"
        findings.append(Finding(
            f"checkpoint {entry.index} ({_range(label, cp)}): bad signature{why}",
            names.get(cp.topic, cp.topic), cp.partition, cp.first_offset, cp.last_offset,
            entry.index))
    return valid, findings


def check_continuity(label: str, entries: list[Entry]) -> list[Finding]:
    """Each checkpoint of a partition must start where the previous one ended (position and
    head); the first starts at position 0 from 32 zero bytes."""
    findings: list[Finding] = []
    head, position, previous = ZERO_HEAD.hex(), 0, None
    topic = label.rsplit("[", 1)[0]
    for entry in entries:
        cp = entry.checkpoint
        if cp.previous_head != head or cp.position != position:
            if cp.position > position:
                first = previous.last_offset + 1 if previous is not None else 0
                findings.append(Finding(
                    f"{label} offsets {first}{DASH}{cp.first_offset - 1}: no checkpoint: "
                    f"checkpoint {entry.index} does not continue from the previous one (positions "
                    f"{position}{DASH}{cp.position - 1} unaccounted for: a checkpoint was removed)",
                    topic, cp.partition, first, cp.first_offset - 1, entry.index))
            else:
                findings.append(Finding(
                    f"checkpoint {entry.index} ({_range(label, cp)}): does not continue from the "
                    "previous checkpoint's head (a checkpoint was removed, replayed or reordered)",
                    topic, cp.partition, cp.first_offset, cp.last_offset, entry.index))
        head, position, previous = cp.head, cp.end, cp
    return findings


class RangeChecker:
    """Fed one partition's committed records in order; checks every signed range against them."""

    def __init__(self, label: str, entries: list[Entry], *, stale_before_ms: int | None = None,
                 grace_s: float = 0.0) -> None:
        self.label = label
        # An uncovered record written before this instant (ms since the epoch) is a failure:
        # the checkpointer had the grace period to cover it.
        self.stale_before_ms, self.grace_s = stale_before_ms, grace_s
        self.stale: list[LogRecord] = []  # the first and the latest such record
        self.stale_count = 0
        self.topic = label.rsplit("[", 1)[0]
        self.position = 0
        self.covered_end = max((e.checkpoint.end for e in entries), default=0)
        self.first_uncovered_offset: int | None = None
        self.results: list[RangeResult] = []
        self.findings: list[Finding] = []
        self._starting: dict[int, list[Entry]] = defaultdict(list)
        for entry in entries:
            self._starting[entry.checkpoint.position].append(entry)
        self._active: list[tuple[Entry, bytes]] = []

    def feed(self, record: LogRecord) -> None:
        for entry in self._starting.pop(self.position, ()):
            self._active.append((entry, bytes.fromhex(entry.checkpoint.previous_head)))
        if self.position == self.covered_end:
            self.first_uncovered_offset = record.offset
        if (self.position >= self.covered_end and self.stale_before_ms is not None
                and 0 <= record.timestamp_ms < self.stale_before_ms):
            self.stale[1:] = [record] if self.stale else [record, record]
            self.stale_count += 1
        if self._active:
            data = record_bytes(record)
            still: list[tuple[Entry, bytes]] = []
            for entry, head in self._active:
                head = hashlib.sha256(head + data).digest()
                if self.position + 1 == entry.checkpoint.end:
                    self._judge(entry, head)
                else:
                    still.append((entry, head))
            self._active = still
        self.position += 1

    def _judge(self, entry: Entry, head: bytes) -> None:
        ok = head.hex() == entry.checkpoint.head
        self.results.append(RangeResult(entry, ok))
        if not ok:
            cp = entry.checkpoint
            self.findings.append(Finding(
                f"{_range(self.label, cp)}: chain head differs from the signed checkpoint "
                f"(checkpoint {entry.index})",
                self.topic, cp.partition, cp.first_offset, cp.last_offset, entry.index))

    def finish(self) -> tuple[list[Finding], list[Finding]]:
        """(failures, notes) once every record was fed."""
        missing = [entry for entry, _ in self._active]
        missing += [e for entries in self._starting.values() for e in entries]
        for entry in sorted(missing, key=lambda e: e.index):
            cp = entry.checkpoint
            self.results.append(RangeResult(entry, False))
            self.findings.append(Finding(
                f"{_range(self.label, cp)}: signed records are missing: the checkpoint covers "
                f"positions {cp.position}{DASH}{cp.end - 1}, the partition holds {self.position} "
                f"committed records (checkpoint {entry.index})",
                self.topic, cp.partition, cp.first_offset, cp.last_offset, entry.index))
        if self.stale_count:
            first, last = self.stale
            written = datetime.fromtimestamp(first.timestamp_ms / 1000, UTC).isoformat()
            self.findings.append(Finding(
                f"{self.label} offsets {first.offset}{DASH}{last.offset}: no checkpoint covers "
                f"{self.stale_count} records older than the grace period ({self.grace_s:g} s; "
                f"the first written {written}): the checkpointer is not running or its "
                "checkpoints were removed", self.topic, first.partition, first.offset,
                last.offset))
        notes: list[Finding] = []
        if self.position > self.covered_end:
            n = self.position - self.covered_end
            notes.append(Finding(
                f"{self.label} records after the last checkpoint (from offset "
                f"{self.first_uncovered_offset}): not yet covered ({n} records)",
                self.topic, None, self.first_uncovered_offset))
        return self.findings, notes


Observer = Callable[[str, LogRecord, int], None]  # (relative topic, record, chain position)


def read_checkpoints(kafka: KafkaSettings, audit_topic: str) -> tuple[list[Entry], list[Finding]]:
    consumer = new_consumer(kafka)
    entries: list[Entry] = []
    findings: list[Finding] = []
    try:
        place = (audit_topic, 0)
        partitions(consumer, audit_topic, kafka.request_timeout_s)
        _low, end = watermarks(consumer, place, kafka.request_timeout_s)
        read = read_to_end(consumer, {place: 0}, {place: end}, kafka.request_timeout_s)
        for index, record in enumerate(map(from_message, read)):
            try:
                cp = decode(record.value)
            except CheckpointError as exc:
                findings.append(Finding(
                    f"checkpoint {index} ({audit_topic} offset {record.offset}): unreadable: {exc}",
                    checkpoint=index))
                continue
            if cp.topic not in AUDITED:
                findings.append(Finding(
                    f"checkpoint {index}: names {cp.topic!r}, not an audited topic",
                    checkpoint=index))
                continue
            entries.append(Entry(index, record.offset, cp))
    finally:
        consumer.close()
    return entries, findings


def verify(
    kafka: KafkaSettings, prefix: str, audit_topic: str, public_key: Ed25519PublicKey,
    *, only: set[str] | None = None, observe: Observer | None = None,
    grace_s: float | None = None, now_s: float | None = None,
) -> Report:
    """Verify the audited topics of namespace `prefix` against the checkpoints in `audit_topic`.
    `only` restricts to some relative topic names; `observe` sees every record read. With
    `grace_s`, an uncovered record written more than `grace_s` before `now_s` (default: the
    clock) fails, and so does an audit topic without a single valid checkpoint."""
    started = time.monotonic()
    stale_before_ms = (None if grace_s is None
                       else int(((time.time() if now_s is None else now_s) - grace_s) * 1000))
    report = Report()
    names = audited_topics(prefix)
    entries, unreadable = read_checkpoints(kafka, audit_topic)
    report.checkpoints = len(entries) + len(unreadable)
    report.failures += unreadable
    valid, bad = check_signatures(entries, public_key, names)
    report.failures += bad
    if grace_s is not None and not valid:
        report.failures.append(Finding(
            f"{audit_topic}: no checkpoint signed by this key at all: nothing in the log is "
            "verified (is `katagate audit checkpoint run` running?)"))
    by_place: dict[tuple[str, int], list[Entry]] = defaultdict(list)
    for entry in valid:
        by_place[(entry.checkpoint.topic, entry.checkpoint.partition)].append(entry)

    consumer = new_consumer(kafka)
    try:
        checkers: dict[tuple[str, int], RangeChecker] = {}
        starts: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        relative = {topic: rel for rel, topic in names.items()}
        for rel, topic in names.items():
            if only is not None and rel not in only:
                continue
            for p in partitions(consumer, topic, kafka.request_timeout_s):
                label = f"{topic}[{p}]"
                place = (topic, p)
                mine = by_place.pop((rel, p), [])
                report.failures += check_continuity(label, mine)
                checkers[place] = RangeChecker(label, mine, stale_before_ms=stale_before_ms,
                                               grace_s=grace_s or 0.0)
                low, ends[place] = watermarks(consumer, place, kafka.request_timeout_s)
                starts[place] = 0
                if low > 0:
                    report.failures.append(Finding(
                        f"{label}: records before offset {low} are gone (retention or deletion):"
                        " the chain cannot be recomputed from offset 0", topic, p, 0, low - 1))
        for (rel, p), orphans in by_place.items():
            if only is None or rel in only:
                for entry in orphans:
                    report.failures.append(Finding(
                        f"checkpoint {entry.index}: {names[rel]}[{p}] does not exist",
                        names[rel], p, checkpoint=entry.index))
        for record in map(from_message,
                          read_to_end(consumer, starts, ends, kafka.request_timeout_s)):
            checker = checkers[(record.topic, record.partition)]
            if observe is not None:
                observe(relative[record.topic], record, checker.position)
            checker.feed(record)
            report.records += 1
        for checker in checkers.values():
            failures, notes = checker.finish()
            report.failures += failures
            report.notes += notes
            report.ranges += checker.results
    finally:
        consumer.close()
    report.failures.sort(key=lambda f: (f.topic or "", f.partition or 0, f.first_offset or 0))
    report.seconds = time.monotonic() - started
    return report
