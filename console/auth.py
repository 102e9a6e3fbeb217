"""Who is asking: a browser session (cookie + CSRF token on every state-changing request) or an
API token (`Authorization: Bearer`, for scripts: no ambient credential, so no CSRF check; a
`read` one changes nothing, an expired one is refused).
Sign-in is rate-limited per client address and per account; a wrong name or password gets one
generic answer."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from katagate.access.tokens import TokenError, TokenRecord, check_token_name, match_token
from katagate.console.accounts import Account
from katagate.console.api_tokens import (
    DEFAULT_DAYS,
    DEFAULT_SCOPE,
    MAX_DAYS,
    MIN_DAYS,
    SCOPES,
    expired,
    scope_of,
)
from katagate.console.metrics import SIGN_INS
from katagate.console.passwords import BadPassword
from katagate.console.problems import Problem, ProblemError
from katagate.console.ratelimit import sign_in_keys
from katagate.console.service import Console
from katagate.console.sessions import COOKIE, CSRF_HEADER, Session, csrf_matches

log = logging.getLogger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRONG_LOGIN = "wrong user name or password"


@dataclass(frozen=True)
class Caller:
    user: str
    actor: str  # recorded on the events this caller's changes write
    session: Session | None  # None: an API token
    token_name: str | None = None
    scope: str | None = None  # an API token's: read | admin
    role: str = "admin"  # the account's: admin | auditor (an API token's is admin)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _unauthorised(error: str) -> ProblemError:
    return ProblemError(Problem(401, error, headers={"WWW-Authenticate": "Bearer"}))


def identify(request: Request) -> Caller:
    console = console_of(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.casefold() != "bearer" or not token.strip():
            raise _unauthorised("Authorization: expected 'Bearer <API token>'")
        record = match_token(console.accounts.tokens(), token.strip())
        if record is None:
            raise _unauthorised("API token unknown or revoked")
        if expired(record, datetime.fromtimestamp(console.clock(), UTC)):
            raise _unauthorised(f"API token {record.name!r} expired at {record.expires_at}: "
                                "make a new one")
        user = console.accounts.admin().name
        return Caller(user, f"{user} (token {record.name})", None, record.name,
                      scope_of(record))
    session_id = request.cookies.get(COOKIE)
    if session_id:
        session = console.sessions.get(session_id, console.clock())
        account = console.accounts.account(session.user) if session is not None else None
        if session is not None and account is not None:  # None: the account was removed
            return Caller(session.user, session.user, session, role=account.role)
    raise _unauthorised("not signed in: sign in at /login, or send an API token "
                        "(Authorization: Bearer ...)")


def authorised(request: Request) -> Caller:
    """The caller, refused 401 without a session or token, 403 for a state-changing request
    from a session without its CSRF token."""
    caller = identify(request)
    if (request.method not in SAFE_METHODS and caller.role == "auditor"
            and request.url.path != "/api/logout"):
        raise ProblemError(Problem(
            403, f"{caller.user} has the role auditor: it can read and export, not change "
                 "anything", "role", ["admin"]))
    if request.method not in SAFE_METHODS and caller.scope == "read":
        raise ProblemError(Problem(
            403, f"API token {caller.token_name!r} has scope read: it cannot change anything "
                 "(make one with scope admin)", "Authorization", list(SCOPES)))
    if request.method not in SAFE_METHODS and caller.session is not None and not csrf_matches(
            caller.session, request.headers.get(CSRF_HEADER)):
        raise ProblemError(Problem(
            403, f"CSRF token missing or wrong: send the page's token in the {CSRF_HEADER} "
                 "header", CSRF_HEADER))
    return caller


Who = Annotated[Caller, Depends(authorised)]


def content_reader(who: Who) -> Caller:
    """A caller who may see a message's content (a Backup copy's headers, text, bytes): an
    administrator or an `admin` token. Content is mail data; an auditor and a `read` token see
    the log's metadata (who, when, verdict, what was done), not what people wrote."""
    if who.role == "auditor":
        raise ProblemError(Problem(
            403, f"{who.user} has the role auditor: it sees the log's metadata, not message "
                 "content", "role", ["admin"]))
    if who.scope == "read":
        raise ProblemError(Problem(
            403, f"API token {who.token_name!r} has scope read: it cannot see message content "
                 "(make one with scope admin)", "Authorization", list(SCOPES)))
    return who


ContentReader = Annotated[Caller, Depends(content_reader)]


def over_tls(request: Request) -> bool:
    """HTTPS served by the console, or behind a TLS-terminating proxy (`cookie_secure`)."""
    return request.url.scheme == "https" or console_of(request).settings.cookie_secure


def same_origin(request: Request) -> None:
    """A browser names the page a request comes from; one from another site is refused."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise ProblemError(Problem(403, f"Origin {origin!r} is not this console", "Origin"))


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=256, description="the administrator's name")
    password: str = Field(max_length=4096)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(max_length=4096)
    new_password: str = Field(max_length=4096, description="8..1024 characters")


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="1..64 letters, digits, '.', '_' or '-'")
    scope: str = Field(DEFAULT_SCOPE, description="read (GET only) or admin (every change)")
    expires_days: int = Field(DEFAULT_DAYS, description=f"{MIN_DAYS}..{MAX_DAYS} days")


router = APIRouter(prefix="/api", tags=["sign-in"])


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _check_password(console: Console, request: Request, name: str, password: str) -> Account:
    """Refuse (401, counted) or let through; 429 while the address or the account is over the
    limit. The attempt is counted before its password is checked (console/ratelimit.py)."""
    address, now = _client(request), console.clock()
    keys = sign_in_keys(address, name)
    retry = console.limiter.admit(keys, now)
    if retry is not None:
        SIGN_INS.labels("rate_limited").inc()
        log.warning("console: sign-in as %r from %s refused: over the limit for %d s",
                    name[:64], address, retry)
        raise ProblemError(Problem(
            429, f"too many failed sign-ins from {address} or as this user: try again in "
                 f"{retry} s", headers={"Retry-After": str(retry)}))
    account = console.accounts.check_password(name, password)
    if account is None:
        SIGN_INS.labels("refused").inc()
        log.warning("console: failed sign-in as %r from %s", name[:64], address)
        raise _unauthorised(WRONG_LOGIN)
    console.limiter.succeeded(keys)
    SIGN_INS.labels("ok").inc()
    log.info("console: %s's password checked from %s", account.name, address)
    return account


@router.post("/login", summary="Sign in: a session cookie and the CSRF token for the pages")
def login(body: Login, request: Request, response: Response) -> dict[str, Any]:
    console = console_of(request)
    same_origin(request)
    account = _check_password(console, request, body.name, body.password)
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    console.sessions.open(account.name, session_id, csrf, console.clock())
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/",
                        secure=over_tls(request))
    return {"user": account.name, "role": account.role, "csrf_token": csrf}


@router.post("/logout", status_code=204, summary="Sign out (ends the session)")
def logout(who: Who, request: Request, response: Response) -> None:
    session_id = request.cookies.get(COOKIE)
    if session_id:
        console_of(request).sessions.close(session_id)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=over_tls(request))


@router.get("/session", summary="Who is signed in, and the session's CSRF token")
def session(who: Who) -> dict[str, Any]:
    return {"user": who.user, "actor": who.actor, "role": who.role, "scope": who.scope,
            "csrf_token": who.session.csrf_token if who.session else None}


def _session_only(who: Caller) -> None:
    if who.session is None:
        raise ProblemError(Problem(403, "only a signed-in administrator can do this, not an "
                                        "API token", "Authorization"))


@router.put("/account/password", status_code=204,
            summary="Change the admin password (every session ends; sign in again)")
def change_password(body: PasswordChange, who: Who, request: Request,
                    response: Response) -> None:
    _session_only(who)
    console = console_of(request)
    _check_password(console, request, who.user, body.current_password)
    try:
        console.accounts.set_password(body.new_password, who.user)
    except BadPassword as exc:
        raise ProblemError(Problem(422, str(exc), "new_password", "8..1024 characters")) from exc
    console.sessions.close_all(who.user)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=over_tls(request))


@router.get("/tokens", tags=["API tokens"], summary="API tokens (names, scopes, expiry)")
def tokens(who: Who, request: Request) -> dict[str, Any]:
    return {"tokens": [token_document(t) for t in console_of(request).accounts.tokens()]}


def token_document(record: TokenRecord) -> dict[str, Any]:
    return {"name": record.name, "created_at": record.created_at, "scope": scope_of(record),
            "expires_at": record.expires_at}


@router.post("/tokens", status_code=201, tags=["API tokens"],
             summary="Create an API token; it is shown in this answer only")
def create_token(body: NewToken, who: Who, request: Request) -> dict[str, Any]:
    _session_only(who)
    console = console_of(request)
    try:
        check_token_name(body.name)
        token = console.accounts.create_token(body.name,
                                              datetime.fromtimestamp(console.clock(), UTC),
                                              body.scope, body.expires_days)
    except TokenError as exc:
        field = str(exc).partition(":")[0]
        allowed = {"scope": list(SCOPES), "expires_days": f"{MIN_DAYS}..{MAX_DAYS}"}.get(field)
        raise ProblemError(Problem(422, str(exc), field, allowed)) from exc
    record = next(t for t in console.accounts.tokens() if t.name == body.name)
    return {**token_document(record), "token": token}


@router.delete("/tokens/{name}", status_code=204, tags=["API tokens"],
               summary="Revoke an API token (a session, or a token with scope admin)")
def revoke_token(name: str, who: Who, request: Request) -> None:
    if not console_of(request).accounts.revoke_token(name):
        raise ProblemError(Problem(404, f"name: no token {name[:80]!r}", "name"))
