"""The web console's pages: server-rendered HTML (Jinja2, autoescaped) laid out like the
product's management console tree; the pages' own script (static/console.js) calls the JSON
API with the session's CSRF token. Without a session every page sends the browser to /login."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from katagate.admin.errors import InvalidCommand
from katagate.admin.labels import CONNECTION_STATES
from katagate.admin.rules import existing_rule
from katagate.console.auth import Caller, console_of, content_reader
from katagate.console.backup_copies import view_document
from katagate.console.filters import checked_id
from katagate.console.mail_pages import (
    backup_copy_page,
    retention_fields,
    search_form,
    timeline_page,
)
from katagate.console.notifications_page import notifications_page
from katagate.console.pages import (
    CONNECTION_WINDOW,
    NAVIGATION,
    kata_protection_page,
    rule_page,
    rules_page,
    safe_next,
)
from katagate.console.problems import ProblemError
from katagate.console.sessions import COOKIE, Session
from katagate.eventlog.raw import RawUnavailable

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)


class SignIn(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _session(request: Request) -> Session:
    console = console_of(request)
    session_id = request.cookies.get(COOKIE)
    session = console.sessions.get(session_id, console.clock()) if session_id else None
    if session is None:
        raise SignIn(request.url.path)
    return session


def _render(request: Request, template: str, session: Session, status: int = 200,
            **context: Any) -> HTMLResponse:
    account = console_of(request).accounts.account(session.user)
    return templates.TemplateResponse(request, template, {
        "user": session.user, "csrf_token": session.csrf_token, "navigation": NAVIGATION,
        "path": request.url.path, "role": account.role if account else None, **context,
    }, status_code=status)


def _refused(request: Request, session: Session, exc: ProblemError) -> HTMLResponse:
    """A page the projector or the caller's role refused, saying why."""
    status = exc.problem.status
    if status in (400, 403, 404):
        return _render(request, "missing.html", session, status=status,
                       message=exc.problem.error,
                       heading="Not allowed" if status == 403 else "Not found")
    return _render(request, "error.html", session, status=status, message=exc.problem.error)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/settings/protection/kata", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    console = console_of(request)
    session_id = request.cookies.get(COOKIE)
    if session_id and console.sessions.get(session_id, console.clock()) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return templates.TemplateResponse(request, "login.html", {"next": safe_next(next)})


@router.get("/settings/protection/kata")
def kata_protection(request: Request) -> HTMLResponse:
    session = _session(request)
    state = console_of(request).control.state()
    return _render(request, "kata_protection.html", session,
                   page=kata_protection_page(state), states=CONNECTION_STATES,
                   connection_rows=CONNECTION_WINDOW)


@router.get("/settings/notifications")
def notifications(request: Request) -> HTMLResponse:
    session = _session(request)
    return _render(request, "notifications.html", session,
                   page=notifications_page(console_of(request).control.state()))


@router.get("/rules")
def rules(request: Request) -> HTMLResponse:
    session = _session(request)
    return _render(request, "rules.html", session,
                   rows=rules_page(console_of(request).control.state()))


@router.get("/rules/{rule_id}")
def rule(request: Request, rule_id: str) -> HTMLResponse:
    session = _session(request)
    state = console_of(request).control.state()
    try:
        found = existing_rule(state, rule_id)
    except InvalidCommand as exc:
        return _render(request, "missing.html", session, status=404, message=str(exc))
    return _render(request, "rule.html", session, page=rule_page(state, found))


@router.get("/queue/kata-quarantine")
def kata_quarantine(request: Request) -> HTMLResponse:
    return _render(request, "kata_quarantine.html", _session(request),
                   fields=search_form("quarantine"))


@router.get("/tracking")
def tracking(request: Request) -> HTMLResponse:
    return _render(request, "tracking.html", _session(request), fields=search_form("tracking"))


@router.get("/tracking/{message_id}")
def message_timeline(request: Request, message_id: str) -> HTMLResponse:
    session = _session(request)
    try:
        document = console_of(request).projector.get(f"/messages/{checked_id(message_id)}")
    except ProblemError as exc:  # unknown or malformed id, or the projector unreachable
        return _refused(request, session, exc)
    return _render(request, "timeline.html", session, page=timeline_page(document))


@router.get("/queue/delivery")
def delivery_queue(request: Request) -> HTMLResponse:
    return _render(request, "delivery_queue.html", _session(request),
                   fields=search_form("queue"))


@router.get("/backup")
def backup(request: Request) -> HTMLResponse:
    session = _session(request)
    settings = console_of(request).control.state().settings
    return _render(request, "backup.html", session, fields=search_form("backup"),
                   retention=retention_fields(settings.backup_max_age_days,
                                              settings.backup_max_bytes))


@router.get("/backup/{message_id}")
def backup_copy(request: Request, message_id: str) -> HTMLResponse:
    """A copy's page: its content is mail data, for administrators only (as the API's)."""
    session = _session(request)
    account = console_of(request).accounts.account(session.user)
    if account is None:  # removed while its session lives: signed out, as the API has it
        raise SignIn(request.url.path)
    console = console_of(request)
    try:
        content_reader(Caller(session.user, session.user, session, role=account.role))
        row = console.projector.get(f"/backup/copies/{checked_id(message_id)}")
        held = (row.get("backup") or {}).get("state") == "held"
        view = view_document(console.backup.view(row)) if held else None
    except ProblemError as exc:
        return _refused(request, session, exc)
    except RawUnavailable as exc:
        return _render(request, "error.html", session, status=410,
                       message=f"the copy's bytes cannot be read: {exc}")
    return _render(request, "backup_copy.html", session, page=backup_copy_page(row, view))
