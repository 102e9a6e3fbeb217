"""The projections as HTTP answers (pure over the live projection; `server.py` is the shell):
canonical JSON bodies, the same bytes `katagate projector replay` writes, and specific JSON
errors naming what was wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, get_args
from urllib.parse import parse_qs, unquote

from katagate.projector import search_filters
from katagate.projector.canonical import document
from katagate.projector.live import LiveProjection
from katagate.projector.search_filters import FilterError
from katagate.projector.store import SearchTooSlow
from katagate.projector.views import STATE_VIEWS
from katagate.schemas import TERMINAL_OUTCOMES, ActionDecided, ActionReason, ScanState

MESSAGE_ID = re.compile(r"^[A-Za-z0-9]{8,64}$")
LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = 1, 1000, 100
FILTERS: dict[str, tuple[str, ...]] = {
    "action": get_args(ActionDecided.model_fields["action"].annotation),
    "reason": get_args(ActionReason),
    "state": (*get_args(ScanState), "response_timeout"),
    "outcome": TERMINAL_OUTCOMES,
}
LIST_PARAMETERS = ("limit", "after", *FILTERS)
# The listings that take the search filters, by path (search_filters.LISTINGS).
LISTINGS = {"/search/messages": "search", "/quarantine/messages": "quarantine",
            "/backup/copies": "backup", "/queue/messages": "queue"}
JSON = "application/json; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON


def problem(status: HTTPStatus, body: dict[str, Any],
            headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, document(body), headers)


class BadRequest(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["error"])
        self.body = body


def _bad(parameter: str, problem: str, allowed: Any) -> BadRequest:
    return BadRequest({"error": f"parameter {parameter!r}: {problem}", "parameter": parameter,
                       "allowed": allowed})


def parse_listing(query: str, allowed: tuple[str, ...] = LIST_PARAMETERS) -> dict[str, Any]:
    """The /messages query, validated: limit, after, and the filters (of those `allowed`)."""
    values = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    for name, given in values.items():
        if name not in allowed:
            raise _bad(name, "unknown parameter", list(allowed))
        if len(given) != 1:
            raise _bad(name, "given more than once", "one value")
    asked: dict[str, Any] = {"limit": LIMIT_DEFAULT, "after": None}
    if "limit" in values:
        text = values["limit"][0]
        limits = f"an integer in {LIMIT_MIN}..{LIMIT_MAX}"
        if not (text.isascii() and text.isdigit()) or not LIMIT_MIN <= int(text) <= LIMIT_MAX:
            raise _bad("limit", f"{text!r} is not {limits}", limits)
        asked["limit"] = int(text)
    if "after" in values:
        after = values["after"][0]
        if not MESSAGE_ID.fullmatch(after):
            raise _bad("after", f"{after!r} is not a message id", "8-64 letters and digits")
        asked["after"] = after
    for name, choices in FILTERS.items():
        if name in values:
            if values[name][0] not in choices:
                raise _bad(name, f"{values[name][0]!r} is not allowed", list(choices))
            asked[name] = values[name][0]
    return asked


def listing(live: LiveProjection, asked: dict[str, Any]) -> dict[str, Any]:
    """One page of message summaries in message id order; `next` is the cursor for `after`."""
    filters = {name: asked[name] for name in FILTERS if name in asked}
    with live.lock:
        page, more = live.projections.listing(asked["after"], asked["limit"], filters)
    return {"messages": page, "next": page[-1]["message_id"] if more else None}


def search(live: LiveProjection, path: str, query: str) -> dict[str, Any]:
    """One page of a listing, its filters validated before the store is touched."""
    listing = LISTINGS[path]
    asked = search_filters.parse(query, listing)
    with live.lock:
        return live.projections.search(asked, listing)


def answer(live: LiveProjection, path: str, query: str) -> Reply:
    """The answer to an authenticated GET of `path` with `query`."""
    try:
        if path.startswith("/state/") and path.removeprefix("/state/") in STATE_VIEWS:
            with live.lock:
                return Reply(HTTPStatus.OK, live.projections.document(path.removeprefix("/state/")))
        if path == "/status":
            return Reply(HTTPStatus.OK, document(live.health()))
        if path in LISTINGS:
            return Reply(HTTPStatus.OK, document(search(live, path, query)))
        if path.startswith("/backup/copies/"):
            return _backup_copy(live, unquote(path.removeprefix("/backup/copies/")))
        if path == "/messages":
            return Reply(HTTPStatus.OK, document(listing(live, parse_listing(query))))
        if path.startswith("/messages/"):
            return _message(live, unquote(path.removeprefix("/messages/")))
    except (BadRequest, FilterError) as exc:
        return problem(HTTPStatus.BAD_REQUEST, exc.body)
    except SearchTooSlow as exc:
        return problem(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)},
                       (("Retry-After", "10"),))
    return problem(HTTPStatus.NOT_FOUND, {"error": f"no such path {path!r}", "path": path})


def _check_id(message_id: str) -> None:
    if not MESSAGE_ID.fullmatch(message_id):
        raise BadRequest({"error": f"{message_id!r} is not a message id",
                          "message_id": message_id, "allowed": "8-64 letters and digits"})


def _backup_copy(live: LiveProjection, message_id: str) -> Reply:
    _check_id(message_id)
    with live.lock:
        body = live.projections.backup_copy(message_id)
    if body is None:
        return problem(HTTPStatus.NOT_FOUND, {"error": f"no Backup copy of {message_id}",
                                              "message_id": message_id})
    return Reply(HTTPStatus.OK, document(body))


def _message(live: LiveProjection, message_id: str) -> Reply:
    _check_id(message_id)
    with live.lock:
        body = live.projections.message(message_id)
    if body is None:
        return problem(HTTPStatus.NOT_FOUND, {"error": f"unknown message id {message_id}",
                                              "message_id": message_id})
    return Reply(HTTPStatus.OK, document(body))
