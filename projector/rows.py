"""A message summary as the row every listing shows, and as the values its search columns hold.

The row's keys are the same wherever a message is listed (search, KATA Quarantine, Backup,
delivery queue); each listing adds its own keys. `verdict`, `action` and `status` take the
values the search filters take (`search_filters.py`), so a row found by `verdict=detected`
shows `"verdict": "detected"`.
"""

from __future__ import annotations

import re
from typing import Any

from katagate.projector.canonical import from_micros
from katagate.projector.summary import MessageSummary

WORD = re.compile(r"[^\W_]+")  # letters and digits, as the subject index splits words


def _at(value: int | None) -> str | None:
    return None if value is None else from_micros(value)


def verdict(s: MessageSummary) -> str:
    """pending | not_detected | detected | timed_out | skipped:<reason>. The decision says
    what the message came to; before it (or for a deletion by an administrator) KATA's own
    verdict, or the response timeout, shows."""
    if s.decision is not None:
        decided = s.decision[1]
        if decided["skipped"]:
            return "timed_out" if decided["reason"] == "timeout" else f"skipped:{decided['reason']}"
        if decided["reason"] in ("detected", "not_detected"):
            return str(decided["reason"])
    state = s.verdict_state
    if state == "detect":
        return "detected"
    if state == "not_detected":
        return "not_detected"
    return "timed_out" if s.timed_out else "pending"


def action(s: MessageSummary) -> str | None:
    """delivered | tagged | deleted | rejected, as decided; None before the decision."""
    if s.decision is None:
        return None
    decided = s.decision[1]
    if decided["action"] == "deliver":
        return "tagged" if decided["tag"] is not None else "delivered"
    return "deleted" if decided["action"] == "delete" else "rejected"


STATUS_OF_OUTCOME = {"delivered": "delivered", "discarded": "discarded",
                     "ndr_sent": "rejected", "ndr_suppressed": "rejected",
                     "delivery_failed": "bounced"}


def status(s: MessageSummary) -> str:
    """pending | delivered | deferred | bounced | discarded | rejected: the terminal event,
    else `deferred` while the last delivery attempt was deferred."""
    if s.outcome is not None:
        return STATUS_OF_OUTCOME[s.outcome[1]]
    if s.delivery is not None and s.delivery[1][0] == "delivery.deferred":
        return "deferred"
    return "pending"


def detects(s: MessageSummary) -> list[dict[str, Any]]:
    if s.verdict is None:
        return []
    return [{"type": kind, "name": name} for kind, name in s.verdict[1][1]]


def backup_state(s: MessageSummary) -> str | None:
    if s.retained is None and s.removed is None:
        return None
    return "removed" if s.removed is not None else "held"


def size(s: MessageSummary) -> int | None:
    """As received; the quarantine's admission says it too (its copy may be read first)."""
    if s.envelope is not None:
        return int(s.envelope[3])
    return None if s.admission is None else int(s.admission[1][2])


def row(message_id: str, s: MessageSummary) -> dict[str, Any]:
    """The keys every listing shows."""
    sender, recipients, subject, _size, client = s.envelope or [None, [], None, None, None]
    queued = status(s) == "deferred" and s.delivery is not None
    state = backup_state(s)
    return {
        "message_id": message_id,
        "received_at": _at(s.received_at),
        "envelope_from": sender,
        "recipients": recipients,
        "subject": subject,
        "size": size(s),
        "client_ip": client,
        "rule_id": s.rule_id,
        "verdict": verdict(s),
        "detects": detects(s),
        "action": action(s),
        "status": status(s),
        "last_reply": None if s.delivery is None else s.delivery[1][1],
        "next_attempt_at": _at(s.delivery[1][3]) if queued and s.delivery else None,
        "backup": None if state is None else {
            "state": state,
            "cause": None if s.removed is None else s.removed[1][0],
            "stored_at": None if s.retained is None else _at(s.retained[1][0]),
            "expires_at": None if s.retained is None else _at(s.retained[1][1]),
        },
    }


def quarantine_row(message_id: str, s: MessageSummary) -> dict[str, Any]:
    admitted = s.admission[1] if s.admission is not None else [None, None, None]
    return {**row(message_id, s), "admitted_at": _at(admitted[0]),
            "deadline_at": _at(admitted[1])}


def backup_row(message_id: str, s: MessageSummary) -> dict[str, Any]:
    retained = s.retained[1] if s.retained is not None else [None, None, None, None, None]
    removed = None if s.removed is None else {
        "cause": s.removed[1][0], "actor": s.removed[1][1], "at": _at(s.removed[1][2])}
    resends = []
    for request, (_key, actor, at, to) in sorted(s.resends.items(), key=lambda r: r[1][0]):
        result = s.resent.get(request)
        resends.append({"actor": actor, "at": _at(at), "to": to,
                        "outcome": None if result is None else result[1],
                        "reply": None if result is None else result[2]})
    return {**row(message_id, s), "stored_at": _at(retained[0]),
            "expires_at": _at(retained[1]), "location": retained[2], "sha256": retained[3],
            "removed": removed, "resends": resends}


def queue_row(message_id: str, s: MessageSummary) -> dict[str, Any]:
    attempt = s.delivery[1] if s.delivery is not None else [None, None, None, None, None]
    requested = None if s.queue_action is None else {
        "action": s.queue_action[1][0], "actor": s.queue_action[1][1],
        "at": _at(s.queue_action[1][2])}
    return {**row(message_id, s), "attempts": attempt[4],
            "first_attempt_at": None if s.first_deferral is None else _at(s.first_deferral[1]),
            "next_hop": attempt[2], "requested": requested}


def summary(message_id: str, s: MessageSummary) -> dict[str, Any]:
    """The summary of GET /messages/{id} and /messages: what the message came to, and the
    row's keys (its `verdict` is the row's; KATA's own state is `scan_state`)."""
    return {
        "first_at": _at(s.first_at),
        "last_at": _at(s.last_at),
        "event_count": s.event_count,
        "quarantine": None if s.quarantine is None else dict(s.quarantine[1]),
        "scan_state": s.verdict_state,
        "late_verdicts": [state for _key, state in s.late],
        "decision": None if s.decision is None else dict(s.decision[1]),
        "outcome": s.outcome_name,
        **row(message_id, s),
    }


def words(text: str) -> str:
    """Lower-case words separated by single spaces, for word-prefix matching."""
    return " ".join(WORD.findall(text.lower()))


def columns(s: MessageSummary) -> tuple[Any, ...]:
    """The search columns of a message's row (store.SEARCH_COLUMNS, in that order)."""
    sender = None if s.envelope is None else str(s.envelope[0]).lower()
    state = backup_state(s)
    return (
        s.received_at, sender,
        None if not sender else sender.rpartition("@")[2],
        None if s.envelope is None else s.envelope[4],
        verdict(s), action(s), status(s),
        size(s),
        1 if s.held else 0,
        None if s.admission is None else s.admission[1][1],
        state,
        None if state is None else words(" ".join(str(n) for _t, n in s.verdict[1][1]
                                                  if n) if s.verdict else ""),
        None if s.envelope is None else words(str(s.envelope[2] or "")),
    )
