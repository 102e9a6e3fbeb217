"""The verdict cache, pure: KATA's verdicts by content key (`MessageReceived.content_sha256`,
docs/decisions/0003-verdict-cache-content-key.md), folded from the scanner's partitions, and the
decision, for each message due for submission, to reuse a verdict, wait for a scan of the same
content already at KATA, or submit.

Only `detect` and `not_detected` verdicts KATA gave are kept: never a failure or a timeout,
never a reused verdict (so an entry's age is the age of the scan behind it). A verdict is reused
within `verdict_cache_ttl_s` of when it was received; the copies of one split message
(ingest/split.py) share their scan whatever the setting, since they are one message the
client sent once. The entries are bounded (`MAX_ENTRIES`, oldest out first), and an entry's
scan stays held for the restore points (`Book.holds`), so a restart rebuilds the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from katagate.schemas import Detect

# Entries are small (a key, ids, a time, the detects' names); 50,000 cover an hour of 14
# distinct messages a second, while an entry of a detect with long details stays bounded too.
MAX_ENTRIES = 50_000
EXPIRY_EVERY = timedelta(seconds=5)


@dataclass(frozen=True)
class Cached:
    """A verdict KATA gave for some content."""

    scan_id: str  # the scan KATA answered (= its message id)
    partition: int
    group: str  # the split message it was a copy of (its first id), or its own id
    state: Literal["detect", "not_detected"]
    detects: tuple[Detect, ...]
    at: datetime  # when the verdict was received


class VerdictCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self.entries: OrderedDict[str, Cached] = OrderedDict()  # content key -> newest verdict
        self._keys: dict[str, str] = {}  # scan id -> its content key, while its entry lives
        self._next_expiry: datetime | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def remember(self, key: str, cached: Cached) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self._keys.pop(old.scan_id, None)
        self.entries[key] = cached
        self._keys[cached.scan_id] = key
        while len(self.entries) > self._max:
            _key, dropped = self.entries.popitem(last=False)
            self._keys.pop(dropped.scan_id, None)

    def holds(self, scan_id: str) -> bool:
        """Whether a live entry came from this message's scan (so its records are needed to
        rebuild the cache after a restart)."""
        return scan_id in self._keys

    def usable(self, key: str, group: str, now: datetime, ttl_s: int) -> Cached | None:
        """The verdict a message of this content and split group may take instead of a scan:
        its own split message's, at any age; another message's within the time-to-live."""
        cached = self.entries.get(key)
        if cached is None:
            return None
        if cached.group == group or (ttl_s > 0 and now - cached.at <= timedelta(seconds=ttl_s)):
            return cached
        return None

    def expire(self, now: datetime, ttl_s: int, wanted: set[str]) -> None:
        """Drop entries past the time-to-live that no live scan of their content still wants
        (a copy of the same split message waiting for its verdict). A pass over every entry
        runs at most every EXPIRY_EVERY: the scanner calls this at every step."""
        if self._next_expiry is not None and now < self._next_expiry:
            return
        self._next_expiry = now + EXPIRY_EVERY
        limit = timedelta(seconds=ttl_s)
        for key in [k for k, c in self.entries.items() if now - c.at > limit
                    and k not in wanted]:
            self._keys.pop(self.entries.pop(key).scan_id, None)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for key in [k for k, c in self.entries.items() if c.partition in gone]:
            self._keys.pop(self.entries.pop(key).scan_id, None)


@dataclass(frozen=True)
class Candidate:
    """What the reuse decision needs of a scan."""

    message_id: str
    content_key: str | None
    group: str


@dataclass(frozen=True)
class Plan:
    reuse: list[tuple[str, Cached]]  # message id, the verdict it takes
    submit: list[str]  # message ids to submit, in the order given
    waiting: list[str]  # message ids whose content is at KATA already


def plan(cache: VerdictCache, due: list[Candidate], in_flight: list[Candidate],
         now: datetime, ttl_s: int) -> Plan:
    """For the messages due for submission (in order): reuse a cached verdict, wait for a scan
    of the same content already submitted (`in_flight`) or chosen before in this plan, or
    submit. With the cache off (`ttl_s` 0) only copies of one split message share a scan."""
    at_kata: dict[str, set[str]] = {}
    for scan in in_flight:
        if scan.content_key is not None:
            at_kata.setdefault(scan.content_key, set()).add(scan.group)
    reuse: list[tuple[str, Cached]] = []
    submit: list[str] = []
    waiting: list[str] = []
    for scan in due:
        key = scan.content_key
        if key is None:  # received before the key was recorded
            submit.append(scan.message_id)
            continue
        cached = cache.usable(key, scan.group, now, ttl_s)
        groups = at_kata.get(key, set())
        if cached is not None:
            reuse.append((scan.message_id, cached))
        elif groups and (ttl_s > 0 or scan.group in groups):
            waiting.append(scan.message_id)
        else:
            submit.append(scan.message_id)
            at_kata.setdefault(key, set()).add(scan.group)
    return Plan(reuse, submit, waiting)
