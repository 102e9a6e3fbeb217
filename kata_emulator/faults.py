"""Latency and fault settings: what they may be, and how a latency spec is read.

Pure: validation raises ValueError with a message naming the option and its range, so the CLI
can show it as is.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_LATENCY_S = 7 * 86400.0
MAX_HANG_S = 3600.0
MAX_CONCURRENCY = 1_000_000
MAX_OBJECT_BYTES = 1 << 40


@dataclass(frozen=True)
class Latency:
    """How long a scan stays `processing`: fixed, uniform between two bounds, or exponential."""

    kind: str  # "fixed" | "uniform" | "exp"
    a: float
    b: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "exp":
            return min(rng.expovariate(1.0 / self.a), MAX_LATENCY_S)
        return self.a


def parse_latency(spec: str) -> Latency:
    """`5`, `0.5`, `uniform:A:B` or `exp:MEAN`, in seconds."""
    usage = "--latency must be SECONDS, uniform:MIN:MAX or exp:MEAN (seconds, 0-604800)"
    parts = spec.strip().split(":")
    try:
        numbers = [float(p) for p in parts[1:]] if len(parts) > 1 else [float(parts[0])]
    except ValueError:
        raise ValueError(f"{usage}, not {spec!r}") from None
    if not all(math.isfinite(n) and 0 <= n <= MAX_LATENCY_S for n in numbers):
        raise ValueError(f"{usage}, not {spec!r}")
    if len(parts) == 1:
        return Latency("fixed", numbers[0])
    if parts[0] == "uniform" and len(numbers) == 2 and numbers[0] <= numbers[1]:
        return Latency("uniform", numbers[0], numbers[1])
    if parts[0] == "exp" and len(numbers) == 1 and numbers[0] > 0:
        return Latency("exp", numbers[0])
    raise ValueError(f"{usage}, not {spec!r}")


@dataclass(frozen=True)
class Faults:
    """Everything an operator or a test may change while the server runs."""

    latency: str = "0"
    concurrency_limit: int = 100
    error_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 30.0
    malformed_rate: float = 0.0
    max_object_bytes: int = 256 * 1024 * 1024
    timeout_rate: float = 0.0
    verdict_error_rate: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def parsed_latency(self) -> Latency:
        return parse_latency(self.latency)


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def check_rate(field: str, text: str) -> float:
    """A share of requests or scans: 0..1."""
    value = _number(field, text, "a number in 0..1")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{option_name(field)} must be a number in 0..1, not {text!r}")
    return value


def check_seconds(field: str, text: str, maximum: float = MAX_HANG_S) -> float:
    value = _number(field, text, f"seconds in 0..{maximum:g}")
    if not 0.0 <= value <= maximum:
        raise ValueError(f"{option_name(field)} must be seconds in 0..{maximum:g}, not {text!r}")
    return value


def check_int(field: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValueError(f"{option_name(field)} must be a whole number in {low}..{high}, "
                         f"not {text!r}")
    return value


def check_latency(text: str) -> str:
    parse_latency(text)
    return text.strip()


def _number(field: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option_name(field)} must be {what}, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{option_name(field)} must be {what}, not {text!r}")
    return value
