"""The delivery queue over JSON: messages whose last delivery attempt was deferred, with the
last reply and the next attempt (the projector's view), and the administrator's actions on one
of them: retry now, return to sender now (a DSN), delete. Each is a `queue.action_requested`
event with the caller as actor; apply carries it out and records the outcome it caused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from katagate.admin.delivery_queue import queue_action, refuse_unless_queued
from katagate.admin.errors import InvalidCommand
from katagate.console.auth import Caller, Who, authorised, console_of
from katagate.console.filters import checked_id, projector_query
from katagate.console.problems import Problem, ProblemError, problem

router = APIRouter(prefix="/api", dependencies=[Depends(authorised)], tags=["delivery queue"])


class QueueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field("", description="why (kept in the log), at most 1000 characters")


@router.get("/queue/messages",
            summary="Messages waiting for a retry at the next hop, with the common filters: "
                    "attempts, last reply, next attempt (from the projector)")
def queued(request: Request) -> dict[str, Any]:
    return console_of(request).projector.get(
        "/queue/messages", projector_query(request.query_params.multi_items()))


def _act(request: Request, who: Caller, message_id: str, action: str,
         body: QueueRequest | None) -> dict[str, Any]:
    console = console_of(request)
    try:
        event = queue_action(checked_id(message_id), action, who.actor,
                             body.comment if body else "", datetime.now(UTC))
    except InvalidCommand as exc:
        raise ProblemError(problem(exc)) from exc
    try:
        row: dict[str, Any] | None = console.projector.get(f"/messages/{message_id}")
    except ProblemError as exc:
        if exc.problem.status != 404:
            raise
        row = None
    try:
        refuse_unless_queued(row, message_id)
    except InvalidCommand as exc:  # delivered, failed, discarded meanwhile, or never queued
        raise ProblemError(Problem(409 if row else 404, str(exc), exc.field, exc.allowed)
                           ) from exc
    console.quarantine.write(event)
    return {"message_id": message_id, "action": action,
            "events": [event.model_dump(mode="json")]}


@router.post("/queue/messages/{message_id}/retry", status_code=202,
             summary="Try the next hop now")
def retry(message_id: str, who: Who, request: Request,
          body: QueueRequest | None = None) -> dict[str, Any]:
    return _act(request, who, message_id, "retry", body)


@router.post("/queue/messages/{message_id}/bounce", status_code=202,
             summary="Return to sender now: a DSN to the envelope sender, as a delivery that "
                     "failed for good")
def bounce(message_id: str, who: Who, request: Request,
           body: QueueRequest | None = None) -> dict[str, Any]:
    return _act(request, who, message_id, "bounce", body)


@router.delete("/queue/messages/{message_id}", status_code=202,
               summary="Delete a queued message: it is discarded, never delivered")
def delete(message_id: str, who: Who, request: Request,
           body: QueueRequest | None = None) -> dict[str, Any]:
    return _act(request, who, message_id, "delete", body)
