"""What arrived at the next hop, counted by Message-ID: the demo sink's folder read as it grows
(demo_sink/store.py: a `.json` sidecar is renamed into place after its `.eml`), and the sum a
restart benchmark or test wants of it: lost, duplicated, delivered before and after a stop."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any


@dataclass
class SinkArrivals:
    """Message-ID -> time.time() of every copy stored in the sink's folder. `refresh` reads only
    the files it has not read yet: a run of 15,000 messages is not parsed again every second."""

    folder: Path
    copies: dict[str, list[float]] = field(default_factory=dict)
    _read: set[str] = field(default_factory=set)

    def refresh(self) -> dict[str, list[float]]:
        if not self.folder.exists():
            return self.copies
        for sidecar in sorted(self.folder.glob("*.json")):
            if sidecar.stem in self._read:
                continue
            received = datetime.fromisoformat(json.loads(sidecar.read_text())["received_at"])
            with sidecar.with_suffix(".eml").open("rb") as eml:
                message_id = str(BytesHeaderParser().parse(eml)["Message-ID"] or "").strip()
            self.copies.setdefault(message_id, []).append(received.timestamp())
            self._read.add(sidecar.stem)
        return self.copies

    def holds(self, wanted: Collection[str]) -> int:
        """How many of `wanted` arrived at least once, as of the last refresh."""
        return sum(1 for m in wanted if m in self.copies)


def tally(accepted: Collection[str], copies: Mapping[str, list[float]], *,
          sent: Collection[str] = (), unanswered: Mapping[str, int] | None = None,
          stop_at: float | None = None) -> dict[str, Any]:
    """One round's figures. `accepted`: the Message-IDs that got a 250; `sent`: every
    Message-ID tried (accepted or not); `unanswered`: per Message-ID, attempts whose connection
    broke after the DATA command, before any reply: the gateway may have taken each of those
    (SMTP's duplicate window, RFC 1047), so each may add a copy that is the client's retry, not
    the gateway's double. `stop_at`: the time.time() of the stop, to split arrivals.

    - lost: accepted, never arrived;
    - duplicated: messages with more copies than 1 (if accepted) + their unanswered attempts,
      and `extra_copies` the copies beyond that; `max_copies` the most of one message;
    - resent_copies: copies beyond the first that unanswered attempts explain;
    - arrived_unaccepted: tried, never accepted, arrived with no unanswered attempt to explain
      it (a refusal the gateway delivered anyway);
    - arrived_before_stop / arrived_after_stop: accepted messages by their first copy's time;
      pending_at_stop: accepted ones with no copy by then."""
    unanswered = unanswered or {}
    accepted_set = set(accepted)
    ours = accepted_set | set(sent)
    lost = duplicated = extra = resent = unaccepted = 0
    most = 0
    for message_id in ours:
        count = len(copies.get(message_id, ()))
        allowed = (1 if message_id in accepted_set else 0) + unanswered.get(message_id, 0)
        most = max(most, count)
        if message_id in accepted_set and count == 0:
            lost += 1
        if count > max(allowed, 1):
            duplicated += 1
            extra += count - max(allowed, 1)
        resent += max(0, min(count, allowed) - 1)
        if message_id not in accepted_set and count and not unanswered.get(message_id):
            unaccepted += 1
    figures: dict[str, Any] = {
        "accepted": len(accepted_set), "arrived": sum(1 for m in accepted_set if m in copies),
        "lost": lost, "duplicated": duplicated, "extra_copies": extra, "max_copies": most,
        "resent_copies": resent, "arrived_unaccepted": unaccepted}
    if stop_at is not None:
        before = sum(1 for m in accepted_set if copies.get(m) and min(copies[m]) < stop_at)
        figures.update(arrived_before_stop=before,
                       arrived_after_stop=figures["arrived"] - before,
                       pending_at_stop=len(accepted_set) - before)
    return figures
