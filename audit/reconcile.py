"""Accounting from the log alone: every message accepted with `250` (its `mail.received`) and what
became of it — exactly one terminal event (invariant 2 of docs/ARCHITECTURE.md), or, where none yet,
why not and until when; duplicated terminals; terminals with no accepted message; quarantine slots
still held; and messages that look like a sender's resend of an accepted one.

Pure: `Reconciler.add` folds events (each once: read `katagate.mail` and the ledger topic
`katagate.quarantine`, whose events are there once each) and `report` judges them as of `now`;
`reconcile` is the shell that reads them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from katagate.audit.reading import new_consumer
from katagate.eventlog.read_to_end import last_stable_offsets, partitions, read_to_end
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    ActionDecided,
    DeliveryDeferred,
    Event,
    MailEvent,
    MessageReceived,
    NotificationComposed,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineReleased,
    ScanSubmitted,
    SchemaError,
    VerdictReceived,
    decode_event,
    terminal_outcome,
)

log = logging.getLogger(__name__)


@dataclass
class Account:
    """What the log says about one message, as far as the accounting needs."""

    received_at: datetime | None = None
    fingerprint: tuple[str, str, tuple[str, ...]] | None = None  # sha256, sender, recipients
    terminals: list[tuple[str, datetime]] = field(default_factory=list)
    admitted_deadline: datetime | None = None
    denied: bool = False
    submitted: bool = False
    verdict: bool = False
    decided: str | None = None  # the action
    retry_at: datetime | None = None
    last: tuple[str, datetime] | None = None
    notice: bool = False  # a notice (its own id, no `mail.received`): not an accepted message


@dataclass(frozen=True)
class Window:
    since: datetime | None = None
    until: datetime | None = None

    def holds(self, at: datetime) -> bool:
        return (self.since is None or at >= self.since) and (self.until is None
                                                              or at <= self.until)


class Reconciler:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.held: dict[str, tuple[int, datetime, datetime]] = {}  # slot: size, since, deadline

    def add_ledger(self, event: Event) -> None:
        """An event of `katagate.quarantine` (the ledger itself, not the mirrors)."""
        match event:
            case QuarantineAdmitted():
                self.held[event.message_id] = (event.size, event.occurred_at,
                                               event.deadline_at)
            case QuarantineReleased():
                self.held.pop(event.message_id, None)

    def add_mail(self, event: Event) -> None:
        """An event of `katagate.mail`."""
        if not isinstance(event, MailEvent):
            return
        account = self.accounts.setdefault(event.message_id, Account())
        account.last = (event.type, event.occurred_at)
        outcome = terminal_outcome(event)
        if outcome is not None:
            account.terminals.append((outcome, event.occurred_at))
            return
        match event:
            case NotificationComposed():
                account.notice = True
            case MessageReceived():
                account.received_at = event.occurred_at
                account.fingerprint = (event.sha256, event.envelope_from,
                                       tuple(sorted(event.envelope_to)))
            case QuarantineAdmitted():
                account.admitted_deadline = event.deadline_at
            case QuarantineDenied():
                account.denied = True
            case ScanSubmitted():
                account.submitted = True
            case VerdictReceived():
                account.verdict = True
            case ActionDecided():
                account.decided = event.action
            case DeliveryDeferred():
                account.retry_at = event.retry_at

    def report(self, now: datetime, window: Window = Window()) -> dict[str, Any]:
        accepted = {m: a for m, a in self.accounts.items()
                    if a.received_at is not None and window.holds(a.received_at)}
        settled = {m for m, a in accepted.items() if len(a.terminals) == 1}
        duplicates = {m: [o for o, _at in a.terminals] for m, a in accepted.items()
                      if len(a.terminals) > 1}
        waiting = [{"message_id": m, **_why(a, now)} for m, a in sorted(accepted.items())
                   if not a.terminals]
        orphans = sorted(m for m, a in self.accounts.items()
                         if a.received_at is None and a.terminals and not a.notice)
        return {
            "since": None if window.since is None else window.since.isoformat(),
            "until": None if window.until is None else window.until.isoformat(),
            "as_of": now.isoformat(),
            "accepted": len(accepted),
            "terminal_exactly_once": len(settled),
            "without_terminal": waiting,
            "duplicate_terminals": duplicates,
            "terminal_without_received": orphans,
            "notices": sum(1 for a in self.accounts.values() if a.notice),
            "quarantine_held": [
                {"message_id": m, "size": size, "since": since.isoformat(),
                 "deadline_at": deadline.isoformat(), "overdue": deadline < now}
                for m, (size, since, deadline) in sorted(self.held.items())],
            "possible_resends": _resends(accepted),
            "balanced": not duplicates and not orphans,
        }


def _why(account: Account, now: datetime) -> dict[str, Any]:
    """Why a message has no terminal event yet, and until when that is expected."""
    if account.decided is not None:
        if account.retry_at is not None:
            return {"state": "delivery_deferred", "until": account.retry_at.isoformat(),
                    "overdue": False}
        return {"state": f"decided_{account.decided}_not_yet_carried_out", "until": None,
                "overdue": None}
    if account.admitted_deadline is not None:
        state = "verdict_received" if account.verdict else (
            "waiting_for_verdict" if account.submitted else "waiting_for_submission")
        return {"state": state, "until": account.admitted_deadline.isoformat(),
                "overdue": account.admitted_deadline < now}
    if account.denied:
        return {"state": "denied_not_yet_decided", "until": None, "overdue": None}
    return {"state": "waiting_for_admission", "until": None, "overdue": None}


def _resends(accepted: dict[str, Account]) -> list[list[str]]:
    """Messages with the same content and envelope: a sender that got no answer in time sends
    again under a new id (at-least-once at the SMTP edge, as with any MTA)."""
    groups: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for message_id, account in accepted.items():
        if account.fingerprint is not None:
            groups.setdefault(account.fingerprint, []).append(message_id)
    return sorted(sorted(ids) for ids in groups.values() if len(ids) > 1)


def reconcile(kafka: KafkaSettings, now: datetime, window: Window = Window()) -> dict[str, Any]:
    """Read `katagate.mail` and `katagate.quarantine` to their ends (the last stable offsets when
    it starts) and account for them. Records that do not decode are counted and skipped."""
    names = TopicNames(kafka.topic_prefix)
    timeout = kafka.request_timeout_s
    reconciler = Reconciler()
    records = undecodable = 0
    consumer = new_consumer(kafka)
    try:
        places = [(topic, p) for topic in (names.mail, names.quarantine)
                  for p in partitions(consumer, topic, timeout)]
        ends = last_stable_offsets(consumer, places, timeout)
        for message in read_to_end(consumer, dict.fromkeys(places, 0), ends, timeout, 5000):
            records += 1
            try:
                event = decode_event(message.value() or b"")
            except SchemaError as exc:
                undecodable += 1
                log.warning("reconcile: skipping %s[%s]@%s: %s", message.topic(),
                            message.partition(), message.offset(), exc)
                continue
            if message.topic() == names.quarantine:
                reconciler.add_ledger(event)
            else:
                reconciler.add_mail(event)
    finally:
        consumer.close()
    report = reconciler.report(now, window)
    report["records_read"] = records
    report["undecodable_records"] = undecodable
    return report
