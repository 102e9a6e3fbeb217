"""The notifier, pure: which events notify whom, and the rate limit that turns a flood into one
digest. It runs inside the admission part (`decider/admission.py`), the single writer that reads
every `katagate.mail` partition and the control view, so one hourly limit holds for the whole
gateway; its book (the notices of the last hour, what the digest still holds, the alerts in
force) is folded from `katagate.quarantine`, where its events are written beside the ledgers.

An occurrence (a detect, a late detect, a Skipped message, quarantine usage over 90 %, the
connection lost) has an id derived from what it is about, so the same occurrence read again
after a crash yields the same notice, never a second one.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter

from katagate.decider.notices import compose, listed, notice_address, one_line
from katagate.schemas import (
    ActionDecided,
    ConnectionState,
    Event,
    LateVerdictReceived,
    MessageReceived,
    NoticeKind,
    NotificationComposed,
    NotificationHeld,
    NotificationSettings,
    ProducerRef,
    QuarantineAdmitted,
)
from katagate.schemas.notifications import Audience, NoticeTemplate

log = logging.getLogger(__name__)
NOTICES_DROPPED = Counter(
    "katagate_notices_dropped_total",
    "Notices that could not be composed safely even without the message's values, by kind",
    ["kind"],
)
NOTICES = uuid.UUID("c3a1f2e4-5b6d-4e7f-8a9b-0c1d2e3f4a5b")  # ids of occurrences and notices
WINDOW = timedelta(hours=1)  # the rate limit's sliding window
REMEMBERED = 100_000  # message summaries and handled occurrences kept
HELD_KEPT = 1000  # held occurrences kept for the digest's list; the rest are only counted
# A digest lists held lines up to this many UTF-8 bytes, the rest counted: the body encoded
# (base64 at worst, 1.37x) plus a template of 8,000 characters stays under MAX_NOTICE_BYTES.
DIGEST_ENTRIES_BYTES = 150_000
# What a notice quotes of a message, replaced when the notice with them cannot be composed.
QUOTED = ("sender", "recipients", "subject", "detects", "message_id_header", "entries")
WITHHELD = "(withheld: see katagate messages show)"
USAGE_ALERT = 0.9  # of either quarantine limit
USAGE_REARM = 0.8  # below this on both limits, the next rise above 90 % notifies again
# Skipped for these reasons: the quarantine full, or KATA not answering.
SKIPPED_NOTIFY = {"size_limit": "the KATA quarantine is full (size limit)",
                  "count_limit": "the KATA quarantine is full (message count limit)",
                  "not_connected": "KATA is unreachable or not connected",
                  "timeout": "KATA gave no verdict within the response timeout",
                  "error": "the KATA scan failed"}
LATE_AFTER = {"timeout": "it was delivered unscanned after the response timeout",
              "forced_release": "an administrator released it before the verdict",
              "action_applied": "it was already delivered",
              "deleted_by_admin": "an administrator deleted it before the verdict"}


def occurrence_id(kind: str, about: str) -> str:
    return uuid.uuid5(NOTICES, f"{kind}:{about}").hex


@dataclass(frozen=True)
class Summary:
    """What a notice names of a message, from its `mail.received`."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    message_id_header: str = ""


@dataclass
class NotifierBook:
    """The notifier's state, folded from its own events on `katagate.quarantine`."""

    sent: deque[datetime] = field(default_factory=deque)  # single notices, oldest first
    held: OrderedDict[str, NotificationHeld] = field(default_factory=OrderedDict)
    done: OrderedDict[str, None] = field(default_factory=OrderedDict)
    held_over: int = 0  # held past HELD_KEPT: counted in the next digest, not listed
    usage_alerts: int = 0
    usage_alerted: bool = False
    connection_alerts: int = 0

    def evolve(self, event: Event) -> None:
        match event:
            case NotificationComposed() | NotificationHeld() if event.message_id in self.done:
                return  # the same event read twice (the ledger topic and its mirror)
            case NotificationComposed():
                self._done(event.message_id)
                if event.kind == "digest":
                    for covered in event.covers:
                        self.held.pop(covered, None)
                    self.held_over = 0
                else:
                    self.sent.append(event.occurred_at)
                    self.sent_within(event.occurred_at)  # the fold keeps one hour, not all
                self._alerted(event.kind)
            case NotificationHeld():
                self._done(event.message_id)
                if len(self.held) < HELD_KEPT:
                    self.held[event.message_id] = event
                else:
                    self.held_over += 1
                self._alerted(event.kind)
            case QuarantineAdmitted():
                ratio = max(event.bytes_in_use / event.limit_bytes,
                            event.messages_in_use / event.limit_messages)
                if ratio < USAGE_REARM:
                    self.usage_alerted = False

    def _done(self, occurrence: str) -> None:
        self.done[occurrence] = None
        while len(self.done) > REMEMBERED:
            self.done.popitem(last=False)

    def _alerted(self, kind: NoticeKind) -> None:
        if kind == "quarantine_usage":
            self.usage_alerts += 1
            self.usage_alerted = True
        elif kind == "connection_lost":
            self.connection_alerts += 1

    def sent_within(self, now: datetime) -> int:
        while self.sent and self.sent[0] <= now - WINDOW:
            self.sent.popleft()
        return len(self.sent)


@dataclass(frozen=True)
class Occurrence:
    kind: NoticeKind
    about: str | None  # the message's id, if it is about one
    values: dict[str, str]
    to: tuple[str, ...]  # the one recipient, for a recipient notice; else the admins
    key: str | None = None  # what tells apart occurrences about one message (the recipient)

    @property
    def audience(self) -> Audience:
        return "recipients" if self.kind.startswith("recipient_") else "administrators"


def _message_values(summary: Summary | None, message_id: str) -> dict[str, str]:
    if summary is None:  # received before this writer started: named by its id alone
        unknown = "(not known to the notifier: see katagate messages show)"
        return {"message_id": message_id, "sender": unknown, "recipients": unknown,
                "subject": unknown, "message_id_header": "(not recorded)"}
    return {"message_id": message_id, "sender": f"<{summary.sender}>",
            "recipients": listed([f"<{r}>" for r in summary.recipients]),
            "subject": summary.subject, "message_id_header": summary.message_id_header
            or "(not recorded)"}


def occurrences(event: Event, summary: Summary | None,
                settings: NotificationSettings) -> list[Occurrence]:
    """What a mail event is worth telling, per the settings (before the rate limit)."""
    admins = tuple(settings.admin_addresses)
    found: list[Occurrence] = []
    match event:
        case ActionDecided():
            values = {**_message_values(summary, event.message_id), "action": event.action,
                      "verdict": "detected" if event.reason == "detected" else event.reason}
            if event.reason == "detected" and settings.notify_detect and admins:
                found.append(Occurrence("detect", event.message_id, values, admins))
            if event.skipped and event.reason in SKIPPED_NOTIFY and settings.notify_skipped \
                    and admins:
                found.append(Occurrence("skipped", event.message_id,
                                        {**values, "detail": SKIPPED_NOTIFY[event.reason]},
                                        admins))
            deleted = event.action == "delete" and event.reason in ("detected",
                                                                    "deleted_by_admin")
            if deleted and settings.notify_recipients_deleted and summary is not None:
                why = ("KATA detected a threat in it" if event.reason == "detected"
                       else "an administrator deleted it")
                found += _per_recipient("recipient_deleted", event.message_id,
                                        {**values, "detail": why}, summary.recipients)
        case LateVerdictReceived(state="detect"):
            values = {**_message_values(summary, event.message_id), "verdict": "detected",
                      "detects": listed([d.name or d.type for d in event.detects]),
                      "action": "none: sent on before the verdict",
                      "detail": LATE_AFTER.get(event.after, event.after)}
            if settings.notify_late_detect and admins:
                found.append(Occurrence("late_detect", event.message_id, values, admins))
            if (settings.notify_recipients_late_detect and summary is not None
                    and event.after != "deleted_by_admin"):
                found += _per_recipient("recipient_late_detect", event.message_id, values,
                                        summary.recipients)
    return found


def _per_recipient(kind: NoticeKind, about: str, values: dict[str, str],
                   recipients: tuple[str, ...]) -> list[Occurrence]:
    """One notice per recipient, To: that recipient only, so none learns of the others (Bcc
    included); an address a notice cannot be written to (quoted, a literal, an encoded word)
    is skipped and named in the log."""
    found = []
    for rcpt in recipients:
        if notice_address(rcpt):
            found.append(Occurrence(kind, about, {**values, "recipients": f"<{rcpt}>"},
                                    (rcpt,), key=rcpt))
        else:
            log.warning("%s: no %s notice to %r: not an address a notice can be written to",
                        about, kind, one_line(rcpt, 320))
    return found


def usage_occurrence(book: NotifierBook, admitted: QuarantineAdmitted,
                     settings: NotificationSettings) -> Occurrence | None:
    """Quarantine usage went above 90 % of a limit (once, until it falls below 80 %)."""
    if book.usage_alerted or not settings.notify_quarantine_usage \
            or not settings.admin_addresses:
        return None
    size = admitted.bytes_in_use / admitted.limit_bytes
    count = admitted.messages_in_use / admitted.limit_messages
    if max(size, count) <= USAGE_ALERT:
        return None
    detail = (f"{admitted.bytes_in_use} of {admitted.limit_bytes} bytes ({size:.0%}), "
              f"{admitted.messages_in_use} of {admitted.limit_messages} messages ({count:.0%})")
    return Occurrence("quarantine_usage", None, {"detail": detail},
                      tuple(settings.admin_addresses))


def connection_occurrence(book: NotifierBook, before: ConnectionState | None,
                          now_state: ConnectionState,
                          settings: NotificationSettings) -> Occurrence | None:
    """The Central Node connection left Connected."""
    if before != "connected" or now_state == "connected":
        return None
    if not settings.notify_connection_lost or not settings.admin_addresses:
        return None
    return Occurrence("connection_lost", None, {"detail": f"the state is now {now_state}"},
                      tuple(settings.admin_addresses))


@dataclass(frozen=True)
class Notifier:
    """What every notice of one writer carries."""

    producer: ProducerRef
    from_domain: str

    def notices(self, book: NotifierBook, found: list[Occurrence], cause: Event | None,
                settings: NotificationSettings, now: datetime) -> list[Event]:
        """Each occurrence as a single notice while the hourly limit allows, else held for the
        digest. The events are folded into `book` as they are made."""
        out: list[Event] = []
        for occ in found:
            about = occ.about or str(book.usage_alerts if occ.kind == "quarantine_usage"
                                     else book.connection_alerts)
            oid = occurrence_id(occ.kind, about if occ.key is None else f"{about}:{occ.key}")
            if oid in book.done:
                continue
            values = {**occ.values, "time": now.isoformat().replace("+00:00", "Z")}
            common = self._common(oid, occ.about, cause, now)
            event: Event
            if book.sent_within(now) < settings.rate_limit_per_hour:
                composed = self._composed(settings.template(occ.kind), values, occ.kind,
                                          occ.audience, occ.to, common)
                if composed is None:
                    continue
                event = composed
            elif not settings.admin_addresses:
                continue  # nobody to send a digest to
            else:
                told = (f" (recipients {listed(list(occ.to))} were not told)"
                        if occ.audience == "recipients" else "")
                v = occ.values
                about = (f" {occ.about}: from {v.get('sender', '')}, subject "
                         f"\"{v.get('subject', '')}\"" if occ.about else "")
                line = one_line(f"{values['time']} {occ.kind}{about} "
                                f"{v.get('detail', v.get('verdict', ''))}{told}", 2000)
                event = NotificationHeld(**common, kind=occ.kind, line=line)
            book.evolve(event)
            out.append(event)
        return out

    def digest(self, book: NotifierBook, settings: NotificationSettings,
               now: datetime) -> list[Event]:
        """The held occurrences in one notice, once the oldest has waited the digest
        interval: the lines that fit in DIGEST_ENTRIES_BYTES, the rest counted."""
        if not book.held or not settings.admin_addresses:
            return []
        first = next(iter(book.held.values()))
        if now < first.occurred_at + timedelta(seconds=settings.digest_interval_s):
            return []
        held = list(book.held.values())
        lines: list[str] = []
        size = 0
        for h in held:
            size += len(h.line.encode()) + 1
            if size > DIGEST_ENTRIES_BYTES:
                break
            lines.append(h.line)
        count = len(held) + book.held_over
        if count > len(lines):
            lines.append(f"(and {count - len(lines)} more: see katagate messages search "
                         "and katagate messages show)")
        did = occurrence_id("digest", first.message_id)
        values = {"count": str(count), "entries": "\n".join(lines),
                  "time": now.isoformat().replace("+00:00", "Z")}
        event = self._composed(settings.template("digest"), values, "digest", "administrators",
                               tuple(settings.admin_addresses),
                               self._common(did, None, None, now),
                               covers=[h.message_id for h in held])
        if event is None:  # dropped: the held list empties all the same, never retried
            book.held.clear()
            book.held_over = 0
            return []
        book.evolve(event)
        return [event]

    def _composed(self, template: NoticeTemplate, values: dict[str, str], kind: NoticeKind,
                  audience: Audience, to: tuple[str, ...], common: dict[str, Any],
                  covers: list[str] | None = None) -> NotificationComposed | None:
        """The notice, else the notice without what it quotes of the message, else None
        (counted). Never raises, and never logs a value (the Subject) or an exception's text,
        which may quote it: one notice's failure must not cost the ledger or other notices."""
        for attempt in (values, {**values, **{k: WITHHELD for k in QUOTED if k in values}}):
            try:
                data = compose(template, attempt, notice_id=common["message_id"], to=to,
                               from_domain=self.from_domain, now=common["occurred_at"])
                return NotificationComposed(**common, kind=kind, audience=audience,
                                            to=list(to), data=data, covers=covers or [])
            except Exception as exc:  # the email package raises many kinds
                log.warning("%s: the %s notice %s could not be composed (%s)%s",
                            common["about"] or "-", kind, common["message_id"],
                            type(exc).__name__, "; trying without the message's values"
                            if attempt is values else "; dropped")
        NOTICES_DROPPED.labels(kind).inc()
        return None

    def _common(self, oid: str, about: str | None, cause: Event | None,
                now: datetime) -> dict[str, Any]:
        return {"event_id": uuid.uuid5(NOTICES, f"event:{oid}"), "occurred_at": now,
                "producer": self.producer, "message_id": oid, "about": about,
                "correlation_id": getattr(cause, "correlation_id", None),
                "causation_id": cause.event_id if cause is not None else None}


class Summaries:
    """What notices name of recent messages, from the `mail.received` this writer read
    (bounded: the newest REMEMBERED)."""

    def __init__(self) -> None:
        self._by_id: OrderedDict[str, Summary] = OrderedDict()

    def remember(self, received: MessageReceived) -> None:
        self._by_id[received.message_id] = Summary(
            received.message_id, received.envelope_from, tuple(received.envelope_to),
            received.subject or "")
        while len(self._by_id) > REMEMBERED:
            self._by_id.popitem(last=False)

    def get(self, message_id: str) -> Summary | None:
        return self._by_id.get(message_id)
