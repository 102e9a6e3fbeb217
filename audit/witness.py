"""The witness: every signed checkpoint, also appended outside Kafka, so that a log rolled back
to an earlier checkpoint (and perhaps continued from there) is told from the real one.

The checkpointer appends each checkpoint it committed as one JSON line (the checkpoint record's
own value), fsynced, to a file opened for appending only; pointed at other storage (a mounted
share, a WORM bucket's mount) it survives whoever controls the broker. `check_witness` is pure:
per partition, the witness's latest checkpoint must be in the log.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from katagate.audit.checkpoint import Checkpoint, CheckpointError, decode, encode, signature_valid
from katagate.audit.verify import DASH, Entry, Finding
from katagate.schemas.errors import KatagateError

SUFFIX = ".witness.jsonl"


class WitnessError(KatagateError):
    """The witness cannot be written or read."""


@dataclass(frozen=True)
class Witnessed:
    line: int  # 1-based, as an editor shows it
    checkpoint: Checkpoint


def witness_file(path: Path, namespace: str) -> Path:
    """A folder holds one file per namespace (`katagate.witness.jsonl`); anything else is the
    file itself."""
    return path / f"{namespace}{SUFFIX}" if path.is_dir() else path


def append(path: Path, checkpoints: Sequence[Checkpoint]) -> None:
    """Append one line per checkpoint in a single write, and fsync before returning."""
    data = b"".join(encode(cp) + b"\n" for cp in checkpoints)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise WitnessError(f"audit witness {path} (KATAGATE_AUDIT_WITNESS): {exc.strerror}"
                           ) from exc


def read(path: Path) -> list[Witnessed]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise WitnessError(f"audit witness {path}: {exc.strerror}") from exc
    witnessed: list[Witnessed] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            witnessed.append(Witnessed(number, decode(line)))
        except CheckpointError as exc:
            raise WitnessError(f"audit witness {path} line {number}: {exc}") from exc
    return witnessed


def _describe(cp: Checkpoint) -> str:
    return (f"offsets {cp.first_offset}{DASH}{cp.last_offset}, positions up to {cp.end - 1}, "
            f"created {cp.created_at}")


def check_witness(
    path: Path, witnessed: Iterable[Witnessed], entries: Iterable[Entry],
    public_key: Ed25519PublicKey, names: dict[str, str],
) -> list[Finding]:
    """Per partition, the witness's latest checkpoint signed by `public_key` must be one of the
    log's valid `entries`: a log whose checkpoints stop before it was rolled back; one that holds
    others as far or further was rewritten from before it."""
    findings: list[Finding] = []
    latest: dict[tuple[str, int], Witnessed] = {}
    for w in witnessed:
        cp = w.checkpoint
        if not signature_valid(cp, public_key):
            findings.append(Finding(f"audit witness {path} line {w.line}: bad signature"))
            continue
        place = (cp.topic, cp.partition)
        if place not in latest or cp.end >= latest[place].checkpoint.end:
            latest[place] = w
    in_log: dict[tuple[str, int], list[Entry]] = {}
    for entry in entries:
        in_log.setdefault((entry.checkpoint.topic, entry.checkpoint.partition), []).append(entry)
    for place, w in sorted(latest.items()):
        cp = w.checkpoint
        topic = names.get(cp.topic, cp.topic)
        label = f"{topic}[{cp.partition}]"
        log = in_log.get(place, [])
        if any(e.checkpoint == cp for e in log):
            continue
        theirs = f"the witness's ({_describe(cp)}; {path} line {w.line})"
        last = max(log, key=lambda e: e.checkpoint.end, default=None)
        if last is None or last.checkpoint.end < cp.end:
            ours = ("the log holds no checkpoint" if last is None else
                    f"the log's latest checkpoint (checkpoint {last.index}: "
                    f"{_describe(last.checkpoint)}) is older than")
            findings.append(Finding(
                f"{label}: rolled back: {ours} {theirs}", topic, cp.partition,
                0 if last is None else last.checkpoint.last_offset + 1, cp.last_offset))
        else:
            findings.append(Finding(
                f"{label}: rewritten: {theirs} is not in the log, whose latest checkpoint "
                f"(checkpoint {last.index}: {_describe(last.checkpoint)}) reaches as far: the "
                f"log was rolled back to before position {cp.end} and continued",
                topic, cp.partition, cp.first_offset, cp.last_offset))
    return findings
