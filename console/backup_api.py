"""Backup over JSON: the copies searched with the common filters (plus `detect` and `state`),
the Backup's usage, and per copy its row and safe view, its download as .eml, a resend (to the
original recipients or to addresses given) and its deletion. Viewing and downloading need an
administrator (content is mail data, `auth.content_reader`); resend and delete are requests to
`katagate.mail` that apply and the Backup ledger carry out, with the caller as actor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from katagate.admin.backup import delete_request, refuse_unless_held, resend_request
from katagate.admin.errors import InvalidCommand
from katagate.console.auth import ContentReader, Who, authorised, console_of
from katagate.console.backup_copies import view_document
from katagate.console.filters import BACKUP_EXTRA, checked_id, projector_query
from katagate.console.problems import Problem, ProblemError, problem
from katagate.eventlog.raw import RawUnavailable

router = APIRouter(prefix="/api", dependencies=[Depends(authorised)], tags=["backup"])


class Resend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: list[str] | None = Field(None, description="1..100 addresses; null: the original "
                                                   "recipients")
    comment: str = Field("", description="why (kept in the log), at most 1000 characters")


class Delete(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field("", description="why (kept in the log), at most 1000 characters")


def copy_row(request: Request, message_id: str) -> dict[str, Any]:
    """The copy's row from the projector (404 naming the id when it has none)."""
    return console_of(request).projector.get(f"/backup/copies/{checked_id(message_id)}")


def _held(row: dict[str, Any]) -> None:
    try:
        refuse_unless_held(row)
    except InvalidCommand as exc:  # removed (expired or deleted): 409, the copy is gone
        raise ProblemError(Problem(409, str(exc), exc.field, exc.allowed)) from exc


def _unavailable(exc: RawUnavailable) -> ProblemError:
    return ProblemError(Problem(410, f"the copy's bytes cannot be read: {exc}", "message_id"))


@router.get("/backup/usage", summary="The Backup's usage against its size limit and storage "
                                     "period (from the projector)")
def backup_usage(request: Request) -> dict[str, Any]:
    return console_of(request).projector.get("/state/backup")


@router.get("/backup/copies",
            summary="Backup copies, newest first: the common filters, detect=<words of a "
                    "detect's name>, state=held|removed (from the projector)")
def copies(request: Request) -> dict[str, Any]:
    query = projector_query(request.query_params.multi_items(), BACKUP_EXTRA)
    return console_of(request).projector.get("/backup/copies", query)


@router.get("/backup/copies/{message_id}",
            summary="A copy's row and, while it is held, its view: headers, the body as text "
                    "(never HTML), attachments (administrators only: it is mail content)")
def copy(message_id: str, who: ContentReader, request: Request) -> dict[str, Any]:
    row = copy_row(request, message_id)
    held = (row.get("backup") or {}).get("state") == "held"
    if not held:
        return {"copy": row, "view": None}
    try:
        mail = console_of(request).backup.view(row)
    except RawUnavailable as exc:
        raise _unavailable(exc) from exc
    return {"copy": row, "view": view_document(mail)}


@router.get("/backup/copies/{message_id}/eml",
            summary="Download the copy as .eml (administrators only: it is mail content)")
def download(message_id: str, who: ContentReader, request: Request) -> Response:
    row = copy_row(request, message_id)
    _held(row)
    try:
        data = console_of(request).backup.read(row)
    except RawUnavailable as exc:
        raise _unavailable(exc) from exc
    return Response(data, media_type="message/rfc822", headers={
        # The id is letters and digits only (checked_id): nothing to escape in the name.
        "Content-Disposition": f'attachment; filename="{row["message_id"]}.eml"'})


@router.post("/backup/copies/{message_id}/resend", status_code=202,
             summary="Resend the copy through the delivery path, marked as released from "
                     "Backup: to its original recipients (to: null) or to the addresses given")
def resend(message_id: str, body: Resend, who: Who, request: Request) -> dict[str, Any]:
    row = copy_row(request, message_id)
    _held(row)
    try:
        event = resend_request(row, who.actor, body.comment, body.to, datetime.now(UTC))
    except InvalidCommand as exc:
        raise ProblemError(problem(exc)) from exc
    console_of(request).quarantine.write(event)
    return {"message_id": message_id, "events": [event.model_dump(mode="json")]}


@router.delete("/backup/copies/{message_id}", status_code=202,
               summary="Delete the copy from the Backup (recorded as deleted_by_admin)")
def delete(message_id: str, who: Who, request: Request,
           body: Delete | None = None) -> dict[str, Any]:
    row = copy_row(request, message_id)
    _held(row)
    try:
        event = delete_request(message_id, who.actor, body.comment if body else "",
                               datetime.now(UTC))
    except InvalidCommand as exc:
        raise ProblemError(problem(exc)) from exc
    console_of(request).quarantine.write(event)
    return {"message_id": message_id, "events": [event.model_dump(mode="json")]}
