"""The search filters every message list shares (Tracking, KATA Quarantine, Backup, delivery
queue), as the console's API takes them and passes them to the projector, which checks their
values and names the allowed ones (its 400 comes back as `{"error", "field", "allowed"}`).
The console checks only their names here, so a misspelt filter is refused rather than ignored.
Pure."""

from __future__ import annotations

from collections.abc import Iterable

from katagate.admin.quarantine import MESSAGE_ID
from katagate.console.problems import Problem, ProblemError

# The common filters, in the order the search form shows them, then paging and order.
FILTERS = ("from", "to", "subject", "client", "since", "until", "verdict", "action", "status")
PAGING = ("limit", "cursor", "order")
# What each list adds to them.
QUARANTINE_EXTRA = ("sort", "after")
BACKUP_EXTRA = ("detect", "state")

# The values the projector accepts, for the search form's choices (it remains the judge).
VERDICTS = ("pending", "not_detected", "detected", "timed_out", "skipped")
SKIP_REASONS = ("size_limit", "count_limit", "too_large", "kata_disabled", "rule_kata_disabled",
                "not_connected", "error", "forced_release")
ACTIONS = ("delivered", "tagged", "deleted", "rejected")
STATUSES = ("pending", "delivered", "deferred", "bounced", "discarded", "rejected")
QUARANTINE_SORTS = ("received_at", "size", "deadline_at", "from")
BACKUP_STATES = ("held", "removed")


def projector_query(given: Iterable[tuple[str, str]], extra: tuple[str, ...] = ()
                    ) -> dict[str, str]:
    """The request's query as the projector's: only known names, each once; empty values are
    left out (a search form sends every field, most of them blank)."""
    allowed = (*FILTERS, *PAGING, *extra)
    query: dict[str, str] = {}
    for name, value in given:
        if name not in allowed:
            raise ProblemError(Problem(400, f"parameter {name[:40]!r}: unknown filter", name[:40],
                                       list(allowed)))
        if name in query:
            raise ProblemError(Problem(400, f"parameter {name!r}: given more than once", name,
                                       "one value"))
        if value.strip():
            query[name] = value.strip()
    return query


def checked_id(message_id: str) -> str:
    """A message id as ingest makes them, before it goes into the projector's path."""
    if not MESSAGE_ID.fullmatch(message_id):
        raise ProblemError(Problem(400, f"message_id: {message_id[:80]!r} is not a message id",
                                   "message_id", "8-64 letters and digits"))
    return message_id
