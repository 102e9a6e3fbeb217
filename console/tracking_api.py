"""Tracking over JSON: search every message the log has seen with the common filters, and one
message's timeline (every event, its time, its producer, its key fields). Both are the
projector's views; the console adds nothing but the check of the filters' names."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from katagate.console.auth import authorised, console_of
from katagate.console.filters import checked_id, projector_query

router = APIRouter(prefix="/api", dependencies=[Depends(authorised)], tags=["tracking"])


@router.get("/messages",
            summary="Search messages: from, to, subject, client, since, until, verdict, "
                    "action, status; limit, cursor, order (newest first by default)")
def search(request: Request) -> dict[str, Any]:
    query = projector_query(request.query_params.multi_items())
    return console_of(request).projector.get("/search/messages", query)


@router.get("/messages/{message_id}",
            summary="A message's summary and its timeline: every event in order")
def timeline(message_id: str, request: Request) -> dict[str, Any]:
    return console_of(request).projector.get(f"/messages/{checked_id(message_id)}")
