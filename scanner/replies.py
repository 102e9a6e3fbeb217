"""Tolerant parsing of the Central Node's replies. Pure: bytes in, values or `Garbage` out.

The documented shapes are `{"scans": [{"scanId", "state"}]}` and a detects list with a paging
token; field spellings vary between versions (`scanId`/`scanID`, a state or a list of states),
so this accepts the variants and refuses anything else with a reason, never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, get_args

KataState = Literal["detect", "not_detected", "processing", "timeout", "error"]
DetectKind = Literal["am", "sb", "yara", "url_reputation", "ids"]
FINAL_STATES: frozenset[KataState] = frozenset({"detect", "not_detected", "timeout", "error"})
# When a scan reports several states, the most consequential one wins.
_PRECEDENCE: tuple[KataState, ...] = ("detect", "error", "timeout", "not_detected", "processing")


@dataclass(frozen=True)
class Garbage:
    """A reply that does not parse: recorded with this reason, then retried."""

    reason: str


@dataclass(frozen=True)
class ScanStatus:
    scan_id: str
    state: KataState


@dataclass(frozen=True)
class DetectRecord:
    scan_id: str
    kind: DetectKind
    name: str | None
    details: str | None


@dataclass(frozen=True)
class DetectsPage:
    detects: tuple[DetectRecord, ...]
    token: str | None
    skipped: int  # entries that did not parse


def normalise_state(raw: object) -> KataState | None:
    if not isinstance(raw, str):
        return None
    text = raw.strip().lower().replace("_", " ").replace("-", " ")
    mapping: dict[str, KataState] = {
        "detect": "detect",
        "detected": "detect",
        "not detected": "not_detected",
        "notdetected": "not_detected",
        "processing": "processing",
        "timeout": "timeout",
        "error": "error",
    }
    return mapping.get(" ".join(text.split()))


def _scan_id(item: dict[str, Any]) -> str | None:
    for key in ("scanId", "scanID", "scan_id", "ScanId"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _load(body: bytes) -> Any | Garbage:
    if len(body) > 64 * 1024 * 1024:
        return Garbage(f"reply of {len(body)} bytes is larger than any poll reply can be")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Garbage(f"reply is not JSON: {exc}")
    except RecursionError:  # json's decoder recurses once per nested array or object
        return Garbage("reply is nested deeper than the JSON decoder goes")


def parse_states(body: bytes) -> tuple[list[ScanStatus], int] | Garbage:
    """The scans of a state poll, and how many entries were unreadable."""
    data = _load(body)
    if isinstance(data, Garbage):
        return data
    items = data.get("scans") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return Garbage("reply has no list of scans")
    scans: list[ScanStatus] = []
    skipped = 0
    for item in items:
        if not isinstance(item, dict) or (scan_id := _scan_id(item)) is None:
            skipped += 1
            continue
        raw = item.get("state", item.get("states"))
        states = [normalise_state(s) for s in (raw if isinstance(raw, list) else [raw])]
        known = [s for s in states if s is not None]
        if not known:
            skipped += 1
            continue
        scans.append(ScanStatus(scan_id, min(known, key=_PRECEDENCE.index)))
    return scans, skipped


def parse_detects(body: bytes) -> DetectsPage | Garbage:
    data = _load(body)
    if isinstance(data, Garbage):
        return data
    if not isinstance(data, dict):
        return Garbage("detects reply is not a JSON object")
    items = data.get("detects", data.get("alerts"))
    if not isinstance(items, list):
        return Garbage("detects reply has no list of detects")
    detects: list[DetectRecord] = []
    skipped = 0
    kinds = get_args(DetectKind)
    for item in items:
        if not isinstance(item, dict) or (scan_id := _scan_id(item)) is None:
            skipped += 1
            continue
        kind = item.get("detectType", item.get("detect_type", item.get("type")))
        if not isinstance(kind, str) or kind.lower() not in kinds:
            skipped += 1
            continue
        name = item.get("threatName", item.get("detectName", item.get("name")))
        details = item.get("details")
        if details is not None and not isinstance(details, str):
            details = json.dumps(details, sort_keys=True)
        detects.append(DetectRecord(
            scan_id=scan_id,
            kind=kind.lower(),  # type: ignore[arg-type]  # checked against DetectKind above
            name=name[:1000] if isinstance(name, str) else None,
            details=details[:65536] if isinstance(details, str) else None,
        ))
    token = data.get("token")
    return DetectsPage(tuple(detects), token if isinstance(token, str) and token else None, skipped)


def error_text(body: bytes) -> str:
    """The `error` of a JSON error reply, else the first printable bytes."""
    data = _load(body)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])[:500]
    return body[:200].decode("utf-8", "replace").strip()
