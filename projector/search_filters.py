"""The search filters of every message listing, validated (pure): one place that says what
each parameter takes, so the projector, the console and the CLI refuse a bad value with the
same words (`400 {"error", "parameter", "allowed"}`).

`parse(query, listing)` reads a URL query into a `Search`; an unknown parameter, a value given
twice or a value out of range raises `FilterError` naming the parameter and what it allows.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from katagate.projector.canonical import micros
from katagate.schemas.errors import KatagateError

# The reasons of an ActionDecided that make a Skipped (a timeout shows as `timed_out`).
SKIPPED_REASONS = ("size_limit", "count_limit", "too_large", "kata_disabled",
                   "rule_kata_disabled", "not_connected", "error", "forced_release")
VERDICTS = ("pending", "not_detected", "detected", "timed_out", "skipped",
            *(f"skipped:{r}" for r in SKIPPED_REASONS))
ACTIONS = ("delivered", "tagged", "deleted", "rejected")
STATUSES = ("pending", "delivered", "deferred", "bounced", "discarded", "rejected")
ORDERS = ("desc", "asc")
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 1000, 50
MAX_WORDS = 16
COMMON = ("from", "to", "subject", "client", "since", "until", "verdict", "action", "status",
          "limit", "cursor", "order")
# Each listing: its parameters beyond the common ones, and the orders it sorts by.
LISTINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "search": ((), ("received_at",)),
    "quarantine": (("sort", "after"), ("received_at", "size", "deadline_at", "from")),
    "backup": (("detect", "state"), ("received_at",)),
    "queue": ((), ("received_at",)),
}
BACKUP_STATES = ("held", "removed")
ADDRESS = re.compile(r"^[^\s@<>]{1,64}@[^\s@<>]{1,255}$")
DOMAIN = re.compile(r"^\*@([A-Za-z0-9.-]{1,255}|\[[0-9A-Fa-f:.]{2,64}\])$")
WORD = re.compile(r"[^\W_]+")  # letters and digits, as rows.words splits them
MESSAGE_ID = re.compile(r"^[A-Za-z0-9]{8,64}$")


class FilterError(KatagateError):
    """A search parameter the listing does not take, or a value it does not allow."""

    def __init__(self, parameter: str, problem: str, allowed: Any) -> None:
        super().__init__(f"parameter {parameter!r}: {problem}")
        self.body = {"error": str(self), "parameter": parameter, "allowed": allowed}


@dataclass(frozen=True)
class Search:
    sender: str | None = None  # lower case; "" is the null sender
    sender_domain: str | None = None
    to: str | None = None
    to_domain: str | None = None
    subject: tuple[str, ...] = ()  # words, lower case
    client: str | None = None
    since: int | None = None  # microseconds since the epoch
    until: int | None = None
    verdict: str | None = None
    action: str | None = None
    status: str | None = None
    detect: tuple[str, ...] = ()
    backup_state: str | None = None
    limit: int = LIMIT_DEFAULT
    order: str = "desc"
    sort: str = "received_at"
    cursor: tuple[Any, str] | None = None  # (the sort value, the message id) of the last row
    after: str | None = None  # the quarantine's old paging: a message id
    legacy: bool = False  # the quarantine's old order: message ids ascending, `next` an id


def _words(parameter: str, text: str) -> tuple[str, ...]:
    words = tuple(dict.fromkeys(w.lower() for w in WORD.findall(text)))
    allowed = f"1..{MAX_WORDS} words (letters and digits)"
    if not words or len(words) > MAX_WORDS:
        raise FilterError(parameter, f"{text!r} is not {allowed}", allowed)
    return words


def _instant(parameter: str, text: str) -> int:
    allowed = "an ISO 8601 instant with a zone, e.g. 2026-01-31T08:00:00Z"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(parameter, f"{text!r} is not {allowed}", allowed) from None
    if value.tzinfo is None:
        raise FilterError(parameter, f"{text!r} has no zone", allowed)
    return micros(value)


def _choice(parameter: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise FilterError(parameter, f"{text!r} is not allowed", list(choices))
    return text


def encode_cursor(sort: str, order: str, value: Any, message_id: str) -> str:
    raw = json.dumps([sort, order, value, message_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(text: str, sort: str, order: str) -> tuple[Any, str]:
    allowed = "the `next` of the previous page, with the same sort and order"
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        got_sort, got_order, value, message_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise FilterError("cursor", f"{text!r} is not a cursor", allowed) from None
    # An int past SQLite's 64 bits would fail in the query, not here: refused as not ours.
    valid = ((isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)
                                         and -2**63 <= value < 2**63))
             and isinstance(message_id, str) and MESSAGE_ID.fullmatch(message_id))
    if not valid:
        raise FilterError("cursor", f"{text!r} is not a cursor", allowed)
    if (got_sort, got_order) != (sort, order):
        raise FilterError("cursor", f"{text!r} was made for another sort or order", allowed)
    return value, message_id


def parse(query: str, listing: str) -> Search:
    """The query of one listing (`LISTINGS`), validated."""
    extra, sorts = LISTINGS[listing]
    known = (*COMMON, *extra)
    values = parse_qs(query, keep_blank_values=True)
    for name, given in values.items():
        if name not in known:
            raise FilterError(name, "unknown parameter", list(known))
        if len(given) != 1:
            raise FilterError(name, "given more than once", "one value")
    asked = {name: given[0] for name, given in values.items()}
    found: dict[str, Any] = {}
    if "from" in asked:
        found.update(_sender(asked["from"]))
    if "to" in asked:
        text = asked["to"]
        if DOMAIN.fullmatch(text):
            found["to_domain"] = text[2:].lower()
        elif ADDRESS.fullmatch(text):
            found["to"] = text.lower()
        else:
            raise FilterError("to", f"{text!r} is not an address or *@domain",
                              "an address (user@example.com) or *@domain")
    if "subject" in asked:
        found["subject"] = _words("subject", asked["subject"])
    if "detect" in asked:
        found["detect"] = _words("detect", asked["detect"])
    if "client" in asked:
        try:
            found["client"] = str(ipaddress.ip_address(asked["client"]))
        except ValueError:
            raise FilterError("client", f"{asked['client']!r} is not an IP address",
                              "an IPv4 or IPv6 address") from None
    for name in ("since", "until"):
        if name in asked:
            found[name] = _instant(name, asked[name])
    for name, choices in (("verdict", VERDICTS), ("action", ACTIONS), ("status", STATUSES),
                          ("order", ORDERS), ("sort", sorts), ("state", BACKUP_STATES)):
        if name in asked:
            found["backup_state" if name == "state" else name] = _choice(
                name, asked[name], choices)
    if "limit" in asked:
        text, limits = asked["limit"], f"an integer in {LIMIT_MIN}..{LIMIT_MAX}"
        if not (text.isascii() and text.isdigit()) or not LIMIT_MIN <= int(text) <= LIMIT_MAX:
            raise FilterError("limit", f"{text!r} is not {limits}", limits)
        found["limit"] = int(text)
    if "after" in asked:
        if not MESSAGE_ID.fullmatch(asked["after"]):
            raise FilterError("after", f"{asked['after']!r} is not a message id",
                              "8-64 letters and digits")
        found["after"] = asked["after"]
    # The quarantine's first listing paged by message id; a caller that asks for neither a
    # sort, an order nor a cursor still gets that (`next` is a message id for `after`).
    if listing == "quarantine" and not {"sort", "order", "cursor"} & set(asked):
        found["legacy"] = True
    elif "after" in asked:
        raise FilterError("after", "not with sort, order or cursor", "the old paging alone")
    if "cursor" in asked:
        found["cursor"] = _cursor(asked["cursor"], found.get("sort", "received_at"),
                                  found.get("order", "desc"))
    return Search(**found)


def _sender(text: str) -> dict[str, str]:
    if text == "<>":
        return {"sender": ""}
    if DOMAIN.fullmatch(text):
        return {"sender_domain": text[2:].lower()}
    if ADDRESS.fullmatch(text):
        return {"sender": text.lower()}
    raise FilterError("from", f"{text!r} is not an address, *@domain or <>",
                      "an address (user@example.com), *@domain, or <> for the null sender")
