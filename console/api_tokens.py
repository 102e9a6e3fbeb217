"""What an API token may do and until when (pure: the time comes in).

- `read`: GET only; `admin`: every change a signed-in administrator can make, revoking tokens
  included, except minting tokens (a session only).
- Each token expires `expires_days` (1..3650, default 90) after it is made.
- A token of an earlier release has neither field: it could change everything and never
  expired, so it is given scope `admin` and no expiry (`legacy_upgrade`, applied to the file
  at the console's start and by the `katagate console token` commands); until then it is read
  the same way, so it keeps working exactly as it did."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from katagate.access.tokens import TokenError, TokenRecord

SCOPES = ("read", "admin")
DEFAULT_SCOPE = "read"  # least privilege unless asked
MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 3650, 90
LEGACY_SCOPE = "admin"  # what a token without a scope could do


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise TokenError(f"scope: must be one of {', '.join(SCOPES)}, got {scope[:40]!r}")
    return scope


def expires_at(now: datetime, days: object) -> str:
    """The expiry of a token made `now` for `days` days (an int, 1..3650), ISO 8601 UTC."""
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_DAYS <= days <= MAX_DAYS:
        raise TokenError(f"expires_days: must be a whole number of days, {MIN_DAYS}..{MAX_DAYS}"
                         f", got {str(days)[:40]!r}")
    return (now.astimezone(UTC) + timedelta(days=days)).isoformat()


def scope_of(record: TokenRecord) -> str:
    return record.scope if record.scope is not None else LEGACY_SCOPE


def expired(record: TokenRecord, now: datetime) -> bool:
    return record.expires_at is not None and now >= datetime.fromisoformat(record.expires_at)


def legacy_upgrade(record: TokenRecord) -> TokenRecord:
    return record if record.scope is not None else replace(record, scope=LEGACY_SCOPE)
