"""The mail log: one line per step of a message, message id first, as Postfix's mail log does,
so `grep ID` over every stage's log tells the message's story:

    01M8… ingest from=<a@x> to=<b@y> nrcpt=1 size=233 client=127.0.0.1 helo=mx.x tls=no rule=none
    01M8… kata verdict=detected detects=EICAR-Test-File scan=01M8…
    01M8… action=delete backup=yes reason=detected skipped=no
    01M8… delivery to=<b@y> nrcpt=1 relay=mx.y:25 attempts=1 tagged=no status=sent (250 2.0.0 Ok)

`line(event)` is pure: the words and fields of an event's line. `write(events)` logs them to
the `katagate.maillog` logger; the transactional producer calls it only after the transaction
holding the events committed, and ingest's writer only once the events are acknowledged, so no
line tells of what the log does not hold.

A hostile address, HELO name, reply or detect name cannot forge a line or a field:
- a value made of printable ASCII other than `"` and `\\` (0x21-0x7E) is written bare;
- any other value is written as a JSON string (double quotes; `"` and `\\` escaped; every
  control character, DEL and non-ASCII character as `\\uXXXX`), so a CR, LF, space, `=` or a
  Unicode line separator never leaves the quotes;
- the next hop's reply comes last, in parentheses as in Postfix, escaped the same way.
The Subject is not logged (mail content stays out of logs), and neither are comments.
At most `MAX_LISTED` recipients and detects are listed; `nrcpt` gives the number of recipients.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from katagate.schemas import (
    ActionDecided,
    BackupDeleteRequested,
    BackupRemoved,
    BackupResendRequested,
    BackupResent,
    BackupRetained,
    BackupStored,
    DeliveryDeferred,
    DeliveryFailed,
    Detect,
    Event,
    ForcedDelete,
    ForcedRelease,
    LateVerdictReceived,
    MailEvent,
    MessageDelivered,
    MessageDiscarded,
    MessageReceived,
    NdrSent,
    NdrSuppressed,
    NotificationComposed,
    NotificationHeld,
    QuarantineAdmitted,
    QuarantineDenied,
    QuarantineHeld,
    QuarantineHoldEnded,
    QuarantineReleased,
    QueueActionRequested,
    ScanFailed,
    ScanSubmitted,
    ScanTimedOut,
    VerdictReceived,
)

LOGGER = "katagate.maillog"
MAX_LISTED = 50
MAX_DETAIL = 200  # a scan failure's detail is the Central Node's text: a bounded excerpt

log = logging.getLogger(LOGGER)

Value = str | int | bool | tuple[str, ...]
ADDRESS_FIELDS = frozenset({"from", "to"})  # written as <a@x>,<b@y>


@dataclass(frozen=True)
class MailLogLine:
    message_id: str
    step: str  # the words after the id ("ingest", "kata", "quarantine admitted"); may be ""
    fields: tuple[tuple[str, Value], ...]
    reply: str | None = None  # the next hop's reply, last on the line

    def text(self) -> str:
        words = [quoted(self.message_id), *self.step.split()]
        words += [f"{key}={_text_value(key, value)}" for key, value in self.fields]
        if self.reply is not None:
            words.append(f"({_escaped(self.reply)})")
        return " ".join(words)

    def values(self) -> dict[str, Any]:
        """The fields for a structured (JSON) record: lists for lists, booleans as such."""
        found: dict[str, Any] = {key: list(value) if isinstance(value, tuple) else value
                                 for key, value in self.fields}
        if self.reply is not None:
            found["reply"] = self.reply
        return found


_BARE = re.compile(r'[!#-\[\]-~]+')  # printable ASCII but space, `"` and `\`


def quoted(value: str) -> str:
    """`value` bare when it is a plain token, else as a JSON string (see the module doc)."""
    if _BARE.fullmatch(value):
        return value
    return f'"{_escaped(value)}"'


def _escaped(value: str) -> str:
    # ensure_ascii escapes controls below 0x20 and everything above 0x7E; DEL is left to us.
    return json.dumps(value, ensure_ascii=True)[1:-1].replace("\x7f", "\\u007f")


def _text_value(key: str, value: Value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        items = [f"<{v}>" for v in value] if key in ADDRESS_FIELDS else list(value)
        return quoted(",".join(items))
    return quoted(f"<{value}>" if key in ADDRESS_FIELDS else value)


def _when(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _listed(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(values[:MAX_LISTED])


def _detects(detects: Sequence[Detect]) -> tuple[str, ...]:
    return _listed([d.name or d.type for d in detects])


_VERDICT = {"detect": "detected"}  # KATA's state "detect" reads as the verdict "detected"

Fields = tuple[tuple[str, Value], ...]


def _received(e: MessageReceived) -> tuple[str, Fields]:
    return "ingest", (("from", e.envelope_from), ("to", _listed(e.envelope_to)),
                      ("nrcpt", len(e.envelope_to)), ("size", e.size),
                      ("client", str(e.client_ip)), ("helo", e.helo), ("tls", e.tls),
                      ("rule", e.rule_id or "none"),
                      *((("copies", _listed(e.copies)),) if e.copies else ()))


def _admitted(e: QuarantineAdmitted) -> tuple[str, Fields]:
    return "quarantine admitted", (("size", e.size), ("usage", e.bytes_in_use),
                                   ("messages", e.messages_in_use),
                                   ("deadline", _when(e.deadline_at)))


def _denied(e: QuarantineDenied) -> tuple[str, Fields]:
    full = (("waiting_list_full", True),) if e.waiting_list_full else ()
    return "quarantine denied", (("reason", e.reason), ("size", e.size),
                                 ("usage", e.bytes_in_use), ("messages", e.messages_in_use),
                                 *full)


def _released(e: QuarantineReleased) -> tuple[str, Fields]:
    return "quarantine released", (("cause", e.cause), ("usage", e.bytes_in_use),
                                   ("messages", e.messages_in_use))


def _held(e: QuarantineHeld) -> tuple[str, Fields]:
    return "quarantine held", (("reason", e.reason), ("size", e.size), ("waiting", e.waiting),
                               ("usage", e.bytes_in_use), ("messages", e.messages_in_use),
                               ("deadline", _when(e.deadline_at)))


def _hold_ended(e: QuarantineHoldEnded) -> tuple[str, Fields]:
    return "quarantine hold_ended", (("cause", e.cause), ("waiting", e.waiting))


def _forced_release(e: ForcedRelease) -> tuple[str, Fields]:
    return "quarantine forced_release", (("actor", e.actor),)


def _forced_delete(e: ForcedDelete) -> tuple[str, Fields]:
    return "quarantine forced_delete", (("actor", e.actor),)


def _submitted(e: ScanSubmitted) -> tuple[str, Fields]:
    node = e.central_node
    return "kata submitted", (("scan", e.scan_id), ("node", f"{node.address}:{node.port}"))


def _failed(e: ScanFailed) -> tuple[str, Fields]:
    return "kata failed", (("scan", e.scan_id), ("reason", e.reason), ("attempt", e.attempt),
                           ("final", e.final), ("detail", e.detail[:MAX_DETAIL]))


def _verdict(e: VerdictReceived) -> tuple[str, Fields]:
    detects: Fields = (("detects", _detects(e.detects)),) if e.detects else ()
    cached: Fields = (("cached_from", e.cached_from),) if e.cached_from else ()
    return "kata", (("verdict", _VERDICT.get(e.state, e.state)), *detects, ("scan", e.scan_id),
                    *cached)


def _late(e: LateVerdictReceived) -> tuple[str, Fields]:
    detects: Fields = (("detects", _detects(e.detects)),) if e.detects else ()
    return "kata late", (("verdict", _VERDICT.get(e.state, e.state)), *detects,
                         ("after", e.after), ("scan", e.scan_id))


def _timed_out(e: ScanTimedOut) -> tuple[str, Fields]:
    return "kata timeout", (("scan", e.scan_id or "none"), ("deadline", _when(e.deadline_at)))


def _decided(e: ActionDecided) -> tuple[str, Fields]:
    tag: Fields = (("tag", e.tag),) if e.tag is not None else ()
    held: Fields = (("held", True),) if e.held else ()  # decided by hold_outcome
    return "", (("action", e.action), ("backup", e.backup), ("reason", e.reason),
                ("skipped", e.skipped), *held, *tag)


def _stored(e: BackupStored) -> tuple[str, Fields]:
    return "backup stored", (("sha256", e.sha256),)


def _retained(e: BackupRetained) -> tuple[str, Fields]:
    return "backup retained", (("size", e.size), ("usage", e.bytes_in_use),
                               ("copies", e.copies_in_use), ("expires", _when(e.expires_at)))


def _removed(e: BackupRemoved) -> tuple[str, Fields]:
    actor: Fields = (("actor", e.actor),) if e.actor is not None else ()
    return "backup removed", (("cause", e.cause), *actor, ("size", e.size),
                              ("usage", e.bytes_in_use), ("copies", e.copies_in_use))


def _delete_requested(e: BackupDeleteRequested) -> tuple[str, Fields]:
    return "backup delete_requested", (("actor", e.actor),)


def _resend_requested(e: BackupResendRequested) -> tuple[str, Fields]:
    return "backup resend_requested", (("actor", e.actor), ("to", _listed(e.recipients)),
                                       ("nrcpt", len(e.recipients)),
                                       ("to_original", e.to_original))


_RESENT_STATUS = {"delivered": "sent", "failed": "bounced"}  # Postfix's words


def _resent(e: BackupResent) -> tuple[str, Fields]:
    return "backup resent", (("to", _listed(e.recipients)), ("nrcpt", len(e.recipients)),
                             ("relay", e.next_hop),
                             ("status", _RESENT_STATUS.get(e.outcome, e.outcome)))


def _delivered(e: MessageDelivered) -> tuple[str, Fields]:
    return "delivery", (("to", _listed(e.recipients)), ("nrcpt", len(e.recipients)),
                        ("relay", e.next_hop), ("attempts", e.attempts), ("tagged", e.tagged),
                        ("status", "sent"))


def _deferred(e: DeliveryDeferred) -> tuple[str, Fields]:
    return "delivery", (("relay", e.next_hop), ("attempt", e.attempt),
                        ("retry_at", _when(e.retry_at)), ("status", "deferred"))


def _delivery_failed(e: DeliveryFailed) -> tuple[str, Fields]:
    return "delivery", (("to", _listed(e.recipients)), ("nrcpt", len(e.recipients)),
                        ("relay", e.next_hop), ("attempts", e.attempts), ("status", "bounced"))


def _discarded(e: MessageDiscarded) -> tuple[str, Fields]:
    return "discarded", (("reason", e.reason),)


def _ndr_sent(e: NdrSent) -> tuple[str, Fields]:
    return "ndr sent", (("to", e.to), ("reason", e.reason), ("dsn", e.dsn_message_id))


def _ndr_suppressed(e: NdrSuppressed) -> tuple[str, Fields]:
    return "ndr suppressed", (("reason", e.reason),)


def _queue_action(e: QueueActionRequested) -> tuple[str, Fields]:
    return "queue", (("action", e.action), ("actor", e.actor))


def _notice(e: NotificationComposed) -> tuple[str, Fields]:
    # The notice's own id first; `about=` names the message, so `grep ID` finds it too.
    return "notice composed", (("kind", e.kind), ("about", e.about or "none"),
                               ("to", _listed(e.to)), ("nrcpt", len(e.to)),
                               ("covers", len(e.covers)))


def _notice_held(e: NotificationHeld) -> tuple[str, Fields]:
    return "notice held", (("kind", e.kind), ("about", e.about or "none"),
                           ("for", "digest"))


# Every mail event's line (tests/unit/test_mail_log.py checks none is missing).
_LINES: dict[type[MailEvent], Callable[[Any], tuple[str, Fields]]] = {
    MessageReceived: _received, QuarantineAdmitted: _admitted, QuarantineDenied: _denied,
    QuarantineReleased: _released, ForcedRelease: _forced_release, ForcedDelete: _forced_delete,
    ScanSubmitted: _submitted, ScanFailed: _failed, VerdictReceived: _verdict,
    LateVerdictReceived: _late, ScanTimedOut: _timed_out, ActionDecided: _decided,
    BackupStored: _stored, BackupRetained: _retained, BackupRemoved: _removed,
    BackupDeleteRequested: _delete_requested, BackupResendRequested: _resend_requested,
    BackupResent: _resent, MessageDelivered: _delivered, DeliveryDeferred: _deferred,
    DeliveryFailed: _delivery_failed, MessageDiscarded: _discarded, NdrSent: _ndr_sent,
    NdrSuppressed: _ndr_suppressed, QueueActionRequested: _queue_action,
    QuarantineHeld: _held, QuarantineHoldEnded: _hold_ended,
    NotificationComposed: _notice, NotificationHeld: _notice_held,
}
_REPLIES: dict[type[MailEvent], Callable[[Any], str]] = {
    MessageDelivered: lambda e: e.reply, DeliveryDeferred: lambda e: e.reply,
    DeliveryFailed: lambda e: e.reply, BackupResent: lambda e: e.reply,
}


def described(kind: type[MailEvent]) -> bool:
    return kind in _LINES


def line(event: Event) -> MailLogLine | None:
    """The mail log line of `event`; None for an event that is not part of a message."""
    if not isinstance(event, MailEvent):
        return None
    make = _LINES.get(type(event))
    if make is None:  # an event type newer than this table: still one line, by its name
        return MailLogLine(event.message_id, "event", (("type", event.type),))
    step, fields = make(event)
    reply = _REPLIES.get(type(event))
    return MailLogLine(event.message_id, step, fields, reply(event) if reply else None)


@dataclass(frozen=True)
class Logged:
    """What a mail log record carries (`record.maillog`) for a structured form: the line and
    the event's envelope, made into fields only when a formatter asks."""

    event: MailEvent
    line: MailLogLine

    def fields(self) -> dict[str, Any]:
        event = self.event
        return {"stage": event.producer.stage, "message_id": self.line.message_id,
                "event": event.type, "event_id": str(event.event_id),
                "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
                "step": self.line.step, **self.line.values()}


def write(events: Iterable[Event]) -> None:
    """Log each event's line (call only once the events are committed)."""
    if not log.isEnabledFor(logging.INFO):
        return
    for event in events:
        try:
            found = line(event)
        except Exception:  # a bug here must not turn a committed transaction into a failure
            log.exception("no mail log line for %s %s", event.type, event.event_id)
            continue
        if found is None or not isinstance(event, MailEvent):
            continue
        log.info(found.text(), extra={"maillog": Logged(event, found)})
