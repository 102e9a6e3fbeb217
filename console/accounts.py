"""The administrator account and API tokens, kept as files in the console's state folder
(mode 0700, files 0600, replaced atomically).

- `account.json`: the admin's name and argon2id password hash (an scrypt one of an earlier
  release is rehashed at the next successful sign-in), created at the first start from
  `KATAGATE_CONSOLE_ADMIN_PASSWORD` or from a generated password, which is then written to
  `initial-admin-password` (removed when the password is changed).
- `tokens.json`: API tokens by name, each stored as its SHA-256 (`access/tokens.py`, shared
  with the projector's read tokens) with its scope and expiry (console/api_tokens.py); the
  token itself is shown once, when created.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from access.tokens import TokenFile, TokenRecord, write_private
from console.api_tokens import (
    DEFAULT_DAYS,
    DEFAULT_SCOPE,
    check_scope,
    expires_at,
    legacy_upgrade,
)
from console.passwords import (
    DECOY,
    check_new_password,
    hash_password,
    needs_upgrade,
    verify_password,
)

ACCOUNT_FILE = "account.json"
TOKENS_FILE = "tokens.json"
INITIAL_PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name
TOKEN_PREFIX = "kgt_"  # noqa: S105 - marks our tokens in logs and secret scanners


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str


@dataclass(frozen=True)
class FirstStart:
    """What the first start created: the password is set when it was generated."""

    name: str
    generated_password: str | None
    password_file: Path | None


class AccountStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._tokens = TokenFile(folder / TOKENS_FILE, TOKEN_PREFIX)

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
                write_private(self.password_file, generated + "\n")
            check_new_password(password)
            self._save_account(Account(name, hash_password(password)))
            return FirstStart(name, generated, self.password_file if generated else None)

    def admin(self) -> Account:
        data = json.loads((self.folder / ACCOUNT_FILE).read_text(encoding="utf-8"))
        return Account(name=str(data["name"]), password_hash=str(data["password_hash"]))

    def set_password(self, password: str) -> None:
        check_new_password(password)
        with self._lock:
            account = self.admin()
            self._save_account(Account(account.name, hash_password(password)))
            self.password_file.unlink(missing_ok=True)  # the generated one is void now

    def check_password(self, name: str, password: str) -> Account | None:
        """The account when `name` and `password` are right, else None. A wrong name is checked
        against a decoy hash, so it takes as long as a wrong password. A right password kept
        under an older scheme (scrypt) is rehashed as argon2id now, while it is at hand."""
        account = self.admin()
        right_name = hmac.compare_digest(name.encode(), account.name.encode())
        right = verify_password(password, account.password_hash if right_name else DECOY)
        if not (right_name and right):
            return None
        if needs_upgrade(account.password_hash):
            with self._lock:
                if self.admin() == account:  # not changed meanwhile by another process
                    account = Account(account.name, hash_password(password))
                    self._save_account(account)
        return account

    def _save_account(self, account: Account) -> None:
        write_private(self.folder / ACCOUNT_FILE, json.dumps(asdict(account), indent=2) + "\n")

    # -- API tokens ---------------------------------------------------------------------------

    def tokens(self) -> list[TokenRecord]:
        return self._tokens.records()

    def create_token(self, name: str, now: datetime, scope: str = DEFAULT_SCOPE,
                     expires_days: object = DEFAULT_DAYS) -> str:
        """A new token (shown once: only its digest is kept), with its scope and expiry."""
        check_scope(scope)
        until = expires_at(now, expires_days)
        with self._lock:
            self._ensure_folder()
        return self._tokens.create(name, now.astimezone(UTC).isoformat(), scope, until)

    def migrate_tokens(self) -> int:
        """Tokens of an earlier release get their scope written down (console/api_tokens.py)."""
        return self._tokens.migrate(legacy_upgrade)

    def revoke_token(self, name: str) -> bool:
        return self._tokens.revoke(name)
