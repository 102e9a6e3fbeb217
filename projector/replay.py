"""The audit replay: every projection rebuilt from offset 0 — to the log's end as it stands
when the replay starts, or as of an offset or an instant — written as the same bytes the live
projector serves."""

from __future__ import annotations

import csv
import gc
import io
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from katagate.eventlog.settings import KafkaSettings
from katagate.projector.canonical import canonical_json, document
from katagate.projector.copies import LedgerCopies
from katagate.projector.snapshot import Positions, write_atomically
from katagate.projector.source import LogReader, projected_topics
from katagate.projector.store import TimelineStore
from katagate.projector.views import VIEW_NAMES, Projections, evolve


@dataclass(frozen=True)
class Replayed:
    projections: Projections
    positions: Positions  # where each partition was read up to (next offset)
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


class Progress:
    """One line on stderr: events, events/s, remaining; rewritten at most twice a second."""

    def __init__(self, out: TextIO | None, total: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._out, self._total, self._clock = out, total, clock
        self._started = self._last = clock()
        self._tty = bool(out is not None and out.isatty())

    def update(self, done: int, final: bool = False) -> None:
        now = self._clock()
        if self._out is None or (not final and now - self._last < 0.5):
            return
        self._last = now
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        line = (f"replay: {done} events, {rate:,.0f} events/s, "
                f"{max(0, self._total - done)} remaining")
        end = "\n" if final or not self._tty else ""
        self._out.write(("\r" if self._tty else "") + line + end)
        self._out.flush()


def replay(
    kafka: KafkaSettings,
    *,
    until_offset: int | None = None,
    as_of: datetime | None = None,
    progress: TextIO | None = None,
    batch_size: int = 5000,
) -> Replayed:
    """Fold every projection from offset 0 up to the bound asked (the current end by default)."""
    started = time.monotonic()
    reader = LogReader(kafka, projected_topics(kafka))
    # The fold makes no cyclic garbage: the cyclic collector would only rescan the caches
    # (decoded events are freed by reference counting as each batch is folded).
    collecting = gc.isenabled()
    gc.disable()
    try:
        ends = reader.end_offsets()
        if as_of is not None:
            bounds = reader.offsets_at(int(as_of.timestamp() * 1000))
        elif until_offset is not None:
            bounds = {key: min(until_offset, end) for key, end in ends.items()}
        else:
            bounds = ends
        meter = Progress(progress, sum(bounds.values()))
        # A mirror's second copy is dropped by its bytes, never decoded (copies.py).
        views = Projections(copies=LedgerCopies(keep_records=True),
                            store=TimelineStore(searchable=False))
        for read in reader.read_to(bounds, batch_size, skip=views.copies.second):
            if read.event is not None:
                evolve(views, read.event, read.value)
            if not reader.records_read % 1024:  # a look at the clock per event is not free
                meter.update(reader.records_read)
        meter.update(reader.records_read, final=True)
        return Replayed(views, dict(reader.positions), reader.records_read,
                        time.monotonic() - started)
    finally:
        if collecting:
            gc.enable()
        reader.close()


def jsonl_lines(views: Projections) -> Iterator[bytes]:
    """One line per message, in message id order: the body of GET /messages/{id}."""
    for message_id in views.message_ids():
        yield document(views.message(message_id))


def csv_rows(views: Projections) -> Iterator[bytes]:
    """One row per event: message_id, seq, occurred_at, type, producer, event_id, fields."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["message_id", "seq", "occurred_at", "type", "producer", "event_id",
                     "fields"])
    for message_id in views.message_ids():
        timeline = views.message(message_id)
        for seq, item in enumerate(timeline["events"] if timeline else ()):
            writer.writerow([message_id, seq, item["occurred_at"], item["type"],
                             item["producer"], item["event_id"], canonical_json(item["fields"])])
        yield text.getvalue().encode("utf-8")
        text.seek(0)
        text.truncate()


def timelines_jsonl(views: Projections) -> bytes:
    return b"".join(jsonl_lines(views))


def timelines_csv(views: Projections) -> bytes:
    return b"".join(csv_rows(views))


def write_outputs(result: Replayed, out: Path, timelines: str = "jsonl") -> list[Path]:
    """connection.json, quarantine.json, counters.json, timelines.jsonl|csv, positions.json."""
    files: dict[str, bytes | Iterable[bytes]] = {
        f"{name}.json": result.projections.document(name) for name in VIEW_NAMES}
    # Streamed: the timelines of a long log are never whole in memory.
    files[f"timelines.{timelines}"] = (csv_rows(result.projections) if timelines == "csv"
                                       else jsonl_lines(result.projections))
    files["positions.json"] = document([
        {"topic": t, "partition": p, "next_offset": o}
        for (t, p), o in sorted(result.positions.items())])
    written = []
    for name, data in files.items():
        write_atomically(out / name, data)
        written.append(out / name)
    return written


def print_views(result: Replayed, out: TextIO = sys.stdout) -> None:
    """The three state views as one canonical JSON object on stdout."""
    out.write(canonical_json({name: result.projections.view(name) for name in VIEW_NAMES})
              + "\n")
