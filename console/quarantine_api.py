"""Message queue → KATA Quarantine over JSON: the waiting messages (sender, recipients,
subject, size, rule, times) searched and sorted with the common filters, its usage, and Send
now / Delete on one message or a selection (all written in one transaction, or none)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from katagate.admin.errors import InvalidCommand
from katagate.admin.quarantine import command, selection
from katagate.console import quarantine
from katagate.console.auth import Caller, Who, authorised, console_of
from katagate.console.filters import QUARANTINE_EXTRA, projector_query
from katagate.console.problems import Problem, ProblemError, problem

router = APIRouter(prefix="/api", dependencies=[Depends(authorised)], tags=["quarantine"])


class QuarantineAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field("", description="why (kept in the log), at most 1000 characters")


class SelectionAction(QuarantineAction):
    action: str = Field(description="send-now | delete")
    message_ids: list[str] = Field(description="the selected messages, 1..1000; every one "
                                               "must be waiting, else nothing is done")


@router.get("/quarantine/usage",
            summary="KATA Quarantine usage against both limits (from the projector)")
def quarantine_usage(request: Request) -> dict[str, Any]:
    return console_of(request).projector.quarantine_usage()


@router.get("/quarantine/messages",
            summary="Messages waiting for a verdict, with the common filters and "
                    "sort=received_at|size|deadline_at|from (from the projector)")
def quarantine_messages(request: Request) -> dict[str, Any]:
    query = projector_query(request.query_params.multi_items(), QUARANTINE_EXTRA)
    return console_of(request).projector.get("/quarantine/messages", query)


def _act(request: Request, who: Caller, what: str, message_id: str,
         comment: str) -> dict[str, Any]:
    console = console_of(request)
    try:
        event = command(what, message_id, who.actor, comment, datetime.now(UTC))
    except InvalidCommand as exc:  # the id or the comment is malformed
        raise ProblemError(problem(exc)) from exc
    try:
        quarantine.require_waiting(console.projector.all_waiting(), message_id)
    except InvalidCommand as exc:  # well-formed, but not waiting (any more)
        raise ProblemError(Problem(404, str(exc), "message_id")) from exc
    console.quarantine.write(event)
    return {"message_id": message_id, "events": [event.model_dump(mode="json")]}


@router.post("/quarantine/messages/{message_id}/send-now", status_code=202,
             summary="Send now: deliver without waiting for the verdict (the scan goes on)")
def send_now(message_id: str, who: Who, request: Request,
             body: QuarantineAction | None = None) -> dict[str, Any]:
    return _act(request, who, "send-now", message_id, body.comment if body else "")


@router.delete("/quarantine/messages/{message_id}", status_code=202,
               summary="Delete a waiting message: it is discarded, never delivered")
def delete_waiting(message_id: str, who: Who, request: Request,
                   body: QuarantineAction | None = None) -> dict[str, Any]:
    return _act(request, who, "delete", message_id, body.comment if body else "")


@router.post("/quarantine/actions", status_code=202,
             summary="Send now or Delete on a selection: every id is checked first; one not "
                     "waiting refuses the whole request (404 naming it); else one transaction")
def act_on_selection(body: SelectionAction, who: Who, request: Request) -> dict[str, Any]:
    console = console_of(request)
    try:
        events = selection(body.action, body.message_ids, who.actor, body.comment,
                                      datetime.now(UTC), lambda: [
                                          m["message_id"]
                                          for m in console.projector.all_waiting()])
    except InvalidCommand as exc:
        raise ProblemError(problem(exc)) from exc
    console.quarantine.write(*events)
    return {"action": body.action,
            "message_ids": list(dict.fromkeys(body.message_ids)),
            "events": [e.model_dump(mode="json") for e in events]}
