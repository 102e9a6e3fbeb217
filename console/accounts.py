"""The administrator account and API tokens, kept as files in the console's state folder
(mode 0700, files 0600, replaced atomically).

- `account.json`: the admin's name and argon2id password hash (an scrypt one of an earlier
  release is rehashed at the next successful sign-in), created at the first start from
  `KATAGATE_CONSOLE_ADMIN_PASSWORD` or from a generated password, which is then written to
  `initial-admin-password` (removed when the password is changed).
- `users.json`: further accounts (`katagate console user add`), each with its role: `admin` or
  `auditor` (reads and exports everything, changes nothing).
- `tokens.json`: API tokens by name, each stored as its SHA-256 (`access/tokens.py`, shared
  with the projector's read tokens) with its scope and expiry (console/api_tokens.py); the
  token itself is shown once, when created.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from katagate.access.tokens import TokenFile, TokenRecord, write_private
from katagate.console.api_tokens import (
    DEFAULT_DAYS,
    DEFAULT_SCOPE,
    check_scope,
    expires_at,
    legacy_upgrade,
)
from katagate.console.passwords import (
    DECOY,
    check_new_password,
    hash_password,
    needs_upgrade,
    verify_password,
)
from katagate.schemas.errors import KatagateError

ACCOUNT_FILE = "account.json"
TOKENS_FILE = "tokens.json"
INITIAL_PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name
TOKEN_PREFIX = "kgt_"  # noqa: S105 - marks our tokens in logs and secret scanners


ROLES = ("admin", "auditor")  # auditor: reads and exports everything, changes nothing
USERS_FILE = "users.json"
USER_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class AccountError(KatagateError, ValueError):
    """An account request that cannot be done; the message names the field and why."""


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    role: str = "admin"


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
        """The first administrator, made at the first start (role admin, always)."""
        data = json.loads((self.folder / ACCOUNT_FILE).read_text(encoding="utf-8"))
        return Account(name=str(data["name"]), password_hash=str(data["password_hash"]))

    def users(self) -> list[Account]:
        """The accounts besides the first administrator (`katagate console user add`)."""
        try:
            data = json.loads((self.folder / USERS_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        return [Account(str(u["name"]), str(u["password_hash"]), str(u["role"]))
                for u in data["users"]]

    def accounts(self) -> list[Account]:
        return [self.admin(), *self.users()]

    def account(self, name: str) -> Account | None:
        return next((a for a in self.accounts() if a.name == name), None)

    def add_user(self, name: str, role: str, password: str) -> Account:
        if not USER_NAME.fullmatch(name):
            raise AccountError("name: must be 1..64 letters, digits, '.', '_' or '-', "
                               f"got {name[:80]!r}")
        if role not in ROLES:
            raise AccountError(f"role: must be one of {', '.join(ROLES)}, got {role[:40]!r}")
        check_new_password(password)
        with self._lock:
            if self.account(name) is not None:
                raise AccountError(f"name: an account {name!r} exists already")
            account = Account(name, hash_password(password), role)
            self._save_users([*self.users(), account])
            return account

    def remove_user(self, name: str) -> bool:
        """False for an unknown name; the first administrator is not removed this way."""
        with self._lock:
            users = self.users()
            kept = [u for u in users if u.name != name]
            if len(kept) == len(users):
                return False
            self._save_users(kept)
            return True

    def set_password(self, password: str, name: str | None = None) -> Account:
        """The new password of `name` (the first administrator when None)."""
        check_new_password(password)
        with self._lock:
            account = self.admin() if name is None else self.account(name)
            if account is None:
                raise AccountError(f"name: no account {str(name)[:80]!r}")
            self._replace(account, replace(account, password_hash=hash_password(password)))
            if account.name == self.admin().name:
                self.password_file.unlink(missing_ok=True)  # the generated one is void now
            return account

    def check_password(self, name: str, password: str) -> Account | None:
        """The account when `name` and `password` are right, else None. A wrong name is checked
        against a decoy hash, so it takes as long as a wrong password. A right password kept
        under an older scheme (scrypt) is rehashed as argon2id now, while it is at hand."""
        found = None
        for candidate in self.accounts():
            if hmac.compare_digest(name.encode(), candidate.name.encode()):
                found = candidate
        right = verify_password(password, found.password_hash if found else DECOY)
        if found is None or not right:
            return None
        if needs_upgrade(found.password_hash):
            with self._lock:
                if self.account(found.name) == found:  # not changed meanwhile elsewhere
                    upgraded = replace(found, password_hash=hash_password(password))
                    self._replace(found, upgraded)
                    found = upgraded
        return found

    def _replace(self, old: Account, new: Account) -> None:
        if old.name == self.admin().name:
            self._save_account(new)
        else:
            self._save_users([new if u.name == old.name else u for u in self.users()])

    def _save_account(self, account: Account) -> None:
        write_private(self.folder / ACCOUNT_FILE, json.dumps(asdict(account), indent=2) + "\n")

    def _save_users(self, users: list[Account]) -> None:
        write_private(self.folder / USERS_FILE,
                      json.dumps({"users": [asdict(u) for u in users]}, indent=2) + "\n")

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
