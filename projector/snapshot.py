"""A live projection stored with its positions, in one SQLite file.

Timelines and summaries are the store's tables; the small views and the positions — the next
offset to read of every partition — are written to its `meta` table in the same transaction.
So the views in the file are always the fold of exactly the records before the positions, and
restarting from the file and reading on gives what reading from offset 0 gives.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from katagate.projector.store import TimelineStore
from katagate.projector.views import Projections

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 5
Positions = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


@dataclass(frozen=True)
class Snapshot:
    positions: Positions
    projections: Projections
    resumed: bool  # False: nothing usable was stored; the projection starts empty


def snapshot_path(state_dir: Path, prefix: str) -> Path:
    return state_dir / f"{prefix}.projection.sqlite"


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def open_snapshot(path: Path, prefix: str, rebuild: bool = False) -> Snapshot:
    """The projection stored at `path`, or an empty one there (no file, another format or
    namespace, an unreadable file, or a rebuild asked for)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if rebuild:
        _remove(path)
    try:
        store = TimelineStore(path)
    except sqlite3.DatabaseError as exc:
        log.warning("projector: discarding unreadable snapshot %s: %s", path, exc)
        _remove(path)
        store = TimelineStore(path)
    try:
        stored = _read(store, prefix)
    except sqlite3.DatabaseError as exc:
        log.warning("projector: discarding unreadable snapshot %s: %s", path, exc)
        store.close()
        _remove(path)
        store, stored = TimelineStore(path), None
    if stored is not None:
        return Snapshot(stored[0], Projections.from_state(stored[1], store), resumed=True)
    store.clear()
    return Snapshot({}, Projections(store=store), resumed=False)


def _read(store: TimelineStore, prefix: str) -> tuple[Positions, dict[str, Any]] | None:
    if store.meta("format") is None:
        return None
    if store.meta("format") != str(SNAPSHOT_FORMAT) or store.meta("prefix") != prefix:
        log.warning("projector: snapshot %s is for another format or namespace", store.path)
        return None
    try:
        positions = {(str(t), int(p)): int(o)
                     for t, p, o in json.loads(store.meta("positions") or "[]")}
        views = json.loads(store.meta("views") or "null")
        Projections.from_state(views, store)  # refuse a malformed state now, not later
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("projector: ignoring malformed snapshot %s: %s", store.path, exc)
        return None
    return positions, views


def save(projections: Projections, positions: Positions, prefix: str) -> None:
    """Commit the store's rows, the views and the positions in one transaction."""
    projections.store.commit({
        "format": str(SNAPSHOT_FORMAT),
        "prefix": prefix,
        "positions": json.dumps([[t, p, o] for (t, p), o in sorted(positions.items())]),
        "views": json.dumps(projections.to_state(), sort_keys=True, separators=(",", ":")),
    })


def write_atomically(path: Path, data: bytes | Iterable[bytes]) -> None:
    """tmp + fsync + rename: a reader (or a crash) sees the old file or the new, never half.
    `data` may be an iterable of chunks, written as they come (a long file is never whole in
    memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in [data] if isinstance(data, bytes) else data:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
