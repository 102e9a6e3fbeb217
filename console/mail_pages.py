"""What the mail pages show (Tracking, a message's timeline, KATA Quarantine, Backup and its
copies, the delivery queue), as plain data from the projector's documents. Pure; the templates
only lay it out, and the lists are filled by static/console.js from the same API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from katagate.console import filters

VERDICT_LABELS = {"pending": "Pending", "not_detected": "Not detected",
                  "detected": "Detected", "timed_out": "Timed out", "skipped": "Skipped"}
SKIP_LABELS = {"size_limit": "quarantine full (size)", "count_limit": "quarantine full (count)",
               "too_large": "too large", "kata_disabled": "KATA protection off",
               "rule_kata_disabled": "KATA protection off for the rule",
               "not_connected": "not connected", "error": "scan error",
               "forced_release": "Send now"}
ACTION_LABELS = {"delivered": "Delivered", "tagged": "Delivered, subject tagged",
                 "deleted": "Deleted", "rejected": "Rejected"}
STATUS_LABELS = {"pending": "Pending", "delivered": "Delivered", "deferred": "Deferred",
                 "bounced": "Bounced", "discarded": "Discarded", "rejected": "Rejected"}
SORT_LABELS = {"received_at": "Received", "size": "Size", "deadline_at": "Time left",
               "from": "Sender"}
STATE_LABELS = {"held": "Held", "removed": "Removed"}
FIELD_TEXT_MAX = 300  # a timeline's field is shown whole up to this, then cut


@dataclass(frozen=True)
class FilterField:
    name: str  # as the API, the projector and the CLI options name it
    label: str
    kind: str = "text"  # text | select | datetime
    choices: tuple[tuple[str, str], ...] = ()  # value, label ("" first: any)
    hint: str = ""


def _select(name: str, label: str, labels: dict[str, str]) -> FilterField:
    return FilterField(name, label, "select", (("", "any"), *labels.items()))


def verdict_choices() -> dict[str, str]:
    """Every verdict value, Skipped alone and with each reason."""
    labels = dict(VERDICT_LABELS)
    labels.update({f"skipped:{reason}": f"Skipped: {SKIP_LABELS[reason]}"
                   for reason in filters.SKIP_REASONS})
    return labels


COMMON_FILTERS = (
    FilterField("from", "Sender", hint="address or *@domain; <> for the null sender"),
    FilterField("to", "Recipient", hint="address or *@domain"),
    FilterField("subject", "Subject", hint="words, each in the subject"),
    FilterField("client", "Client address", hint="IP address"),
    FilterField("since", "Received since", "datetime", hint="UTC"),
    FilterField("until", "Received before", "datetime", hint="UTC"),
    _select("verdict", "KATA verdict", verdict_choices()),
    _select("action", "Action", ACTION_LABELS),
    _select("status", "Delivery status", STATUS_LABELS),
)


def search_form(page: str) -> tuple[FilterField, ...]:
    """The filters a page's search form has: the common ones, plus what its list adds."""
    if page == "quarantine":  # waiting for a verdict: no verdict, action or status yet
        return (*COMMON_FILTERS[:6],
                _select("sort", "Sort by", SORT_LABELS),
                FilterField("order", "Order", "select", (("asc", "oldest first"),
                                                         ("desc", "newest first"))))
    if page == "backup":
        return (*COMMON_FILTERS[:6],
                FilterField("detect", "Detect", hint="words in a detect's name"),
                _select("state", "Copy", STATE_LABELS))
    if page == "queue":
        return COMMON_FILTERS[:6]
    return COMMON_FILTERS


def verdict_label(verdict: str | None) -> str:
    if verdict is None:
        return ""
    kind, _, reason = verdict.partition(":")
    label = VERDICT_LABELS.get(kind, kind)
    return f"{label}: {SKIP_LABELS.get(reason, reason)}" if reason else label


def field_text(value: Any) -> str:
    """An event field as one line of text (the template escapes it)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           separators=(", ", ": "))
    return text if len(text) <= FIELD_TEXT_MAX else text[:FIELD_TEXT_MAX - 1] + "…"


@dataclass(frozen=True)
class TimelineEntry:
    at: str
    type: str
    producer: str
    fields: tuple[tuple[str, str], ...]  # the event's key fields, those with a value


@dataclass(frozen=True)
class TimelinePage:
    message_id: str
    summary: tuple[tuple[str, str], ...]  # label, value
    entries: tuple[TimelineEntry, ...]


SUMMARY = (("received_at", "Received"), ("envelope_from", "Sender"),
           ("recipients", "Recipients"), ("subject", "Subject"), ("size", "Size"),
           ("client_ip", "Client address"), ("rule_id", "Rule"), ("verdict", "KATA verdict"),
           ("detects", "Detects"), ("action", "Action"), ("status", "Delivery status"),
           ("last_reply", "Last reply"))


def _summary_value(name: str, value: Any) -> str:
    if name == "verdict":
        return verdict_label(value)
    if name == "action":
        return ACTION_LABELS.get(value, str(value))
    if name == "status":
        return STATUS_LABELS.get(value, str(value))
    if name == "recipients":
        return ", ".join(value)
    if name == "detects":
        return ", ".join(f"{d.get('name', '')} ({d.get('type', '')})" for d in value)
    if name == "envelope_from":
        return value or "<>"
    if name == "size":
        return f"{value} bytes"
    return field_text(value)


def timeline_page(document: dict[str, Any]) -> TimelinePage:
    """A message's summary and every event of its timeline, in the projector's order."""
    summary = tuple((label, _summary_value(name, document[name])) for name, label in SUMMARY
                    if document.get(name) not in (None, "", []) or (name == "envelope_from"
                    and name in document))
    entries = tuple(TimelineEntry(
        e["occurred_at"], e["type"], e["producer"],
        tuple((k, field_text(v)) for k, v in e.get("fields", {}).items()
              if v not in (None, "", [], {})))
        for e in document.get("events", ()))
    return TimelinePage(document["message_id"], summary, entries)


@dataclass(frozen=True)
class BackupCopyPage:
    message_id: str
    held: bool
    summary: tuple[tuple[str, str], ...]  # label, value
    resends: tuple[tuple[str, str, str, str, str], ...]  # at, actor, to, outcome, reply
    headers: tuple[tuple[str, str], ...]
    text: str  # shown in a <pre>, as text: never HTML
    attachments: tuple[tuple[str, str, str], ...]  # filename, content type, size
    truncated: bool
    original_recipients: str


def _removed_text(removed: dict[str, Any] | None) -> str:
    if not removed:
        return ""
    by = f" by {removed['actor']}" if removed.get("actor") else ""
    return f"{removed.get('cause', '')}{by} at {removed.get('at', '')}"


def backup_copy_page(row: dict[str, Any], view: dict[str, Any] | None) -> BackupCopyPage:
    """A Backup copy: what the log says of it, and (while held) its headers and text."""
    backup = row.get("backup") or {}
    held = backup.get("state") == "held" and not row.get("removed")
    facts = [*((label, _summary_value(name, row[name])) for name, label in SUMMARY[:9]
               if name in row and row[name] not in (None, [])),
             ("Stored", str(row.get("stored_at") or backup.get("stored_at") or "")),
             ("Kept until", str(row.get("expires_at") or backup.get("expires_at") or "")),
             ("Copy", "Held" if held else "Removed: " + _removed_text(row.get("removed")))]
    resends = tuple((str(r.get("at", "")), str(r.get("actor", "")),
                     ", ".join(r.get("to") or []), str(r.get("outcome") or "requested"),
                     str(r.get("reply") or "")) for r in row.get("resends") or ())
    view = view or {}
    return BackupCopyPage(
        message_id=row["message_id"], held=held, summary=tuple(facts), resends=resends,
        headers=tuple((h["name"], h["value"]) for h in view.get("headers", ())),
        text=view.get("text", ""),
        attachments=tuple((a["filename"] or "(no name)", a["content_type"], str(a["size"]))
                          for a in view.get("attachments", ())),
        truncated=bool(view.get("truncated")),
        original_recipients=", ".join(row.get("recipients") or []))


@dataclass(frozen=True)
class RetentionField:
    name: str  # the setting, as `PUT /api/settings` names it
    label: str
    value: str
    hint: str


def retention_fields(backup_max_age_days: int, backup_max_bytes: int) -> tuple[
        RetentionField, ...]:
    return (RetentionField("backup_max_age_days", "Backup storage period",
                           str(backup_max_age_days), "days, 1..3650; default 30"),
            RetentionField("backup_max_bytes", "Backup maximum size", str(backup_max_bytes),
                           "bytes, 1048576..2^50; default 10737418240 (10 GiB)"))
