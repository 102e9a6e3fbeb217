"""What the emulator finds in an object: the EICAR test string, SHA-256 indicators, regexes.

An email carries attachments base64- or quoted-printable-encoded, so MIME parts are decoded and
scanned too (bounded: at most MAX_PARTS parts).
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from katagate.kata_emulator.errors import EmulatorError

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "EICAR-Test-File"
DETECT_TYPES = ("am", "sb", "yara", "url_reputation", "ids")
MAX_PARTS = 1000
_log = logging.getLogger(__name__)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:", re.MULTILINE)


@dataclass(frozen=True)
class Detect:
    detect_type: str
    threat_name: str
    details: str


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[bytes]
    name: str
    detect_type: str = "yara"


@dataclass(frozen=True)
class Rules:
    sha256: dict[str, tuple[str, str]] = field(default_factory=dict)  # hex -> (type, name)
    patterns: tuple[Pattern, ...] = ()


def load_rules(path: Path) -> Rules:
    """Read and check a rules file; every mistake names the entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EmulatorError(f"rules file {path}: {exc}") from None
    return parse_rules(data, str(path))


def parse_rules(data: object, where: str = "rules") -> Rules:
    if not isinstance(data, dict) or set(data) - {"sha256", "patterns"}:
        raise EmulatorError(f"{where}: expected an object with keys 'sha256' and 'patterns'")
    hashes: dict[str, tuple[str, str]] = {}
    for i, entry in enumerate(_list(data, "sha256", where)):
        at = f"{where}: sha256[{i}]"
        digest = _text(entry, "sha256", at).lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise EmulatorError(f"{at}: 'sha256' must be 64 hex digits")
        hashes[digest] = (_type(entry, at, "am"), _text(entry, "name", at))
    patterns = []
    for i, entry in enumerate(_list(data, "patterns", where)):
        at = f"{where}: patterns[{i}]"
        try:
            regex = re.compile(_text(entry, "regex", at).encode("utf-8"))
        except re.error as exc:
            raise EmulatorError(f"{at}: bad regex: {exc}") from None
        patterns.append(Pattern(regex, _text(entry, "name", at), _type(entry, at, "yara")))
    return Rules(sha256=hashes, patterns=tuple(patterns))


def scan(content: bytes, rules: Rules) -> list[Detect]:
    """Detects for one object, each (type, name) once; empty means `not detected`."""
    found: dict[tuple[str, str], Detect] = {}
    for label, data in _objects(content):
        for detect in _scan_one(label, data, rules):
            found.setdefault((detect.detect_type, detect.threat_name), detect)
    return list(found.values())


def _scan_one(label: str, data: bytes, rules: Rules) -> list[Detect]:
    detects = []
    if EICAR in data:
        detects.append(Detect("am", EICAR_NAME, f"EICAR test string in {label}"))
    digest = hashlib.sha256(data).hexdigest()
    if digest in rules.sha256:
        kind, name = rules.sha256[digest]
        detects.append(Detect(kind, name, f"SHA-256 {digest} of {label} is a known indicator"))
    for pattern in rules.patterns:
        if pattern.regex.search(data):
            detects.append(Detect(
                pattern.detect_type, pattern.name,
                f"{label} matches /{pattern.regex.pattern.decode('utf-8', 'replace')}/",
            ))
    return detects


def _objects(content: bytes) -> list[tuple[str, bytes]]:
    """The whole object, then the decoded leaf parts when it looks like an email."""
    objects = [("the object", content)]
    if not _HEADER_LINE.match(content[:1000]):
        return objects
    try:
        message = email.message_from_bytes(content, policy=email.policy.compat32)
        for index, part in enumerate(_leaves(message)):
            if index >= MAX_PARTS:
                break
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and payload:
                name = part.get_filename() or f"MIME part {index + 1}"
                objects.append((f"attachment {name!r}" if part.get_filename() else name, payload))
    except (RecursionError, ValueError, LookupError, TypeError):
        pass  # a malformed message is still scanned as a whole
    return objects


def _leaves(message: Message) -> list[Message]:
    leaves: list[Message] = []
    stack = [message]
    while stack and len(leaves) < MAX_PARTS:
        part = stack.pop()
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, Message))
        else:
            leaves.append(part)
    return leaves


def _list(data: dict[str, object], key: str, where: str) -> list[dict[str, object]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise EmulatorError(f"{where}: '{key}' must be a list of objects")
    return value


def _text(entry: dict[str, object], key: str, at: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise EmulatorError(f"{at}: '{key}' must be a non-empty string")
    return value


def _type(entry: dict[str, object], at: str, default: str) -> str:
    value = entry.get("type", default)
    if value not in DETECT_TYPES:
        raise EmulatorError(f"{at}: 'type' must be one of {', '.join(DETECT_TYPES)}")
    return str(value)


class RulesFile:
    """The `--rules` file, re-read when it changes, so rules can be edited while serving."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: int | None = None
        self._rules = Rules()
        if path is not None:
            self._rules = load_rules(path)  # a bad file at start is the operator's to fix
            self._stamp = path.stat().st_mtime_ns

    def __call__(self) -> Rules:
        if self.path is None:
            return self._rules
        try:
            stamp = self.path.stat().st_mtime_ns
            if stamp != self._stamp:
                self._rules, self._stamp = load_rules(self.path), stamp
        except (OSError, EmulatorError) as exc:
            _log.error("keeping the previous rules: %s", exc)
        return self._rules
