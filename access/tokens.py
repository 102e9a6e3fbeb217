"""Bearer tokens for scripts, kept as their SHA-256 in a JSON file (mode 0600, replaced
atomically): the console's API tokens and the projector's read tokens. A token is a long
random string, so a fast hash is enough; it is shown once, when created, and only its digest
is kept. Presented tokens are compared in constant time against every record."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from katagate.schemas.errors import KatagateError

TOKEN_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_TOKENS = 100


class TokenError(KatagateError, ValueError):
    """A token request that cannot be done; the message names the field and why."""


@dataclass(frozen=True)
class TokenRecord:
    name: str
    sha256: str
    created_at: str
    # What the token may do, and until when (ISO 8601, UTC): the console's API tokens have
    # them; None where a file of an earlier release, or the projector's tokens, have none.
    scope: str | None = None
    expires_at: str | None = None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def match_token(records: list[TokenRecord], presented: str) -> TokenRecord | None:
    """The record of the presented token, compared in constant time against every record."""
    digest = token_digest(presented)
    found = None
    for record in records:
        if hmac.compare_digest(record.sha256, digest):
            found = record
    return found


def check_token_name(name: str) -> str:
    if not TOKEN_NAME.fullmatch(name):
        raise TokenError("name: must be 1..64 letters, digits, '.', '_' or '-', "
                         f"got {name[:80]!r}")
    return name


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` as mode 0600 from the first byte, replacing it atomically."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


class TokenFile:
    """The tokens of one file. Reads are cached by the file's identity (replaced atomically,
    a change is a new inode), so a revocation by another process counts at the next check."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix  # marks the tokens in logs and secret scanners
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int], list[TokenRecord]] | None = None

    def records(self) -> list[TokenRecord]:
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return []
        key = (status.st_ino, status.st_mtime_ns, status.st_size)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        data = json.loads(self.path.read_text(encoding="utf-8"))
        records = [TokenRecord(**record) for record in data["tokens"]]
        self._cache = (key, records)
        return records

    def match(self, presented: str) -> TokenRecord | None:
        return match_token(self.records(), presented)

    def create(self, name: str, created_at: str, scope: str | None = None,
               expires_at: str | None = None) -> str:
        """A new token (shown once: only its digest is kept)."""
        check_token_name(name)
        with self._lock:
            records = self.records()
            if any(r.name == name for r in records):
                raise TokenError(f"name: a token {name!r} exists already; revoke it first")
            if len(records) >= MAX_TOKENS:
                raise TokenError(f"name: at most {MAX_TOKENS} tokens; revoke one first")
            token = self.prefix + secrets.token_urlsafe(32)
            self._save([*records, TokenRecord(name, token_digest(token), created_at, scope,
                                              expires_at)])
            return token

    def revoke(self, name: str) -> bool:
        with self._lock:
            records = self.records()
            kept = [r for r in records if r.name != name]
            if len(kept) == len(records):
                return False
            self._save(kept)
            return True

    def migrate(self, upgrade: Callable[[TokenRecord], TokenRecord]) -> int:
        """Rewrite every record through `upgrade`; how many changed (none: the file is left)."""
        with self._lock:
            records = self.records()
            upgraded = [upgrade(record) for record in records]
            changed = sum(a != b for a, b in zip(records, upgraded, strict=True))
            if changed:
                self._save(upgraded)
            return changed

    def ensure_in_file(self, name: str, holder: Path, created_at: str) -> bool:
        """Make `holder` (mode 0600) hold a valid token named `name`: kept when it does
        already, else `name` is revoked and made anew. True when a token was made."""
        if holder.exists():
            record = self.match(holder.read_text(encoding="utf-8").strip())
            if record is not None and record.name == name:
                return False
        self.revoke(name)
        token = self.create(name, created_at)
        holder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(holder, token + "\n")
        return True

    def _save(self, records: list[TokenRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.path,
                      json.dumps({"tokens": [{k: v for k, v in asdict(r).items() if v is not None}
                                             for r in records]}, indent=2) + "\n")
