"""A projection stored with its positions: one JSON file, replaced atomically.

The positions are the next offset to read of every partition the projection has read; the
views in the file are the fold of exactly the records before them. Restarting from the file
and reading on from its positions gives what reading from offset 0 gives.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from projector.views import Projections

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1
Positions = dict[tuple[str, int], int]  # (topic, partition) -> next offset to read


@dataclass(frozen=True)
class Snapshot:
    positions: Positions
    projections: Projections


def snapshot_path(state_dir: Path, prefix: str) -> Path:
    return state_dir / f"{prefix}.projection.json"


def encode(positions: Positions, projections: Projections, prefix: str) -> bytes:
    body = {
        "format": SNAPSHOT_FORMAT,
        "prefix": prefix,
        "positions": [[t, p, o] for (t, p), o in sorted(positions.items())],
        "projections": projections.to_state(),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def write_atomically(path: Path, data: bytes) -> None:
    """tmp + fsync + rename: a reader (or a crash) sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
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


def load(path: Path, prefix: str) -> Snapshot | None:
    """The stored projection, or None (no file, another namespace, or an unreadable one)."""
    try:
        raw: Any = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("projector: ignoring unreadable snapshot %s: %s", path, exc)
        return None
    try:
        if raw["format"] != SNAPSHOT_FORMAT or raw["prefix"] != prefix:
            log.warning("projector: snapshot %s is for another format or namespace", path)
            return None
        positions = {(str(t), int(p)): int(o) for t, p, o in raw["positions"]}
        return Snapshot(positions, Projections.from_state(raw["projections"]))
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("projector: ignoring malformed snapshot %s: %s", path, exc)
        return None
