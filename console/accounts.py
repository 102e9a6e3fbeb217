"""The administrator account and API tokens, kept as files in the console's state folder
(mode 0700, files 0600, replaced atomically).

- `account.json`: the admin's name and scrypt password hash, created at the first start from
  `KATAGATE_CONSOLE_ADMIN_PASSWORD` or from a generated password, which is then written to
  `initial-admin-password` (removed when the password is changed).
- `tokens.json`: API tokens by name, each stored as its SHA-256 (tokens are long random
  strings, so a fast hash is enough); the token itself is shown once, when created.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from console.passwords import SALT_BYTES, check_new_password, hash_password

ACCOUNT_FILE = "account.json"
TOKENS_FILE = "tokens.json"
INITIAL_PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name
TOKEN_PREFIX = "kgt_"  # noqa: S105 - marks our tokens in logs and secret scanners
TOKEN_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_TOKENS = 100


class AccountError(ValueError):
    """A request about the account or tokens that cannot be done; the message says why."""


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str


@dataclass(frozen=True)
class TokenRecord:
    name: str
    sha256: str
    created_at: str


@dataclass(frozen=True)
class FirstStart:
    """What the first start created: the password is set when it was generated."""

    name: str
    generated_password: str | None
    password_file: Path | None


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
        raise AccountError("name: must be 1..64 letters, digits, '.', '_' or '-', "
                           f"got {name[:80]!r}")
    return name


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


class AccountStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    @property
    def password_file(self) -> Path:
        return self.folder / INITIAL_PASSWORD_FILE

    def _ensure_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder.chmod(0o700)

    def ensure_admin(self, name: str, password: str | None) -> FirstStart | None:
        """Create the admin account unless there is one; None when there was."""
        with self._lock:
            self._ensure_folder()
            if (self.folder / ACCOUNT_FILE).exists():
                return None
            generated = None
            if password is None:
                generated = password = secrets.token_urlsafe(18)
                _write_private(self.password_file, generated + "\n")
            check_new_password(password)
            self._save_account(Account(name, hash_password(password, os.urandom(SALT_BYTES))))
            return FirstStart(name, generated, self.password_file if generated else None)

    def admin(self) -> Account:
        data = json.loads((self.folder / ACCOUNT_FILE).read_text(encoding="utf-8"))
        return Account(name=str(data["name"]), password_hash=str(data["password_hash"]))

    def set_password(self, password: str) -> None:
        check_new_password(password)
        with self._lock:
            account = self.admin()
            self._save_account(Account(account.name,
                                       hash_password(password, os.urandom(SALT_BYTES))))
            self.password_file.unlink(missing_ok=True)  # the generated one is void now

    def _save_account(self, account: Account) -> None:
        _write_private(self.folder / ACCOUNT_FILE, json.dumps(asdict(account), indent=2) + "\n")

    # -- API tokens ---------------------------------------------------------------------------

    def tokens(self) -> list[TokenRecord]:
        path = self.folder / TOKENS_FILE
        if not path.exists():
            return []
        data = json.loads(path.read_text(encoding="utf-8"))
        return [TokenRecord(**record) for record in data["tokens"]]

    def create_token(self, name: str, created_at: str) -> str:
        """A new token (shown once: only its digest is kept)."""
        check_token_name(name)
        with self._lock:
            self._ensure_folder()
            records = self.tokens()
            if any(r.name == name for r in records):
                raise AccountError(f"name: a token {name!r} exists already; revoke it first")
            if len(records) >= MAX_TOKENS:
                raise AccountError(f"name: at most {MAX_TOKENS} tokens; revoke one first")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            self._save_tokens([*records, TokenRecord(name, token_digest(token), created_at)])
            return token

    def revoke_token(self, name: str) -> bool:
        with self._lock:
            records = self.tokens()
            kept = [r for r in records if r.name != name]
            if len(kept) == len(records):
                return False
            self._save_tokens(kept)
            return True

    def _save_tokens(self, records: list[TokenRecord]) -> None:
        _write_private(self.folder / TOKENS_FILE,
                       json.dumps({"tokens": [asdict(r) for r in records]}, indent=2) + "\n")
