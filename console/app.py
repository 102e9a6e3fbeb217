"""The console's FastAPI application: the JSON API (OpenAPI at /api/openapi.json), the pages,
their static files, and one shape for every error: `{"error", "field", "allowed"}`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from katagate.admin.control_writer import ConcurrentChange
from katagate.console import api, auth, backup_api, quarantine_api, queue_api, tracking_api, web
from katagate.console.limits import BodyLimit
from katagate.console.problems import ProblemError
from katagate.console.service import Console
from katagate.eventlog.errors import KatagateError

SECURITY_HEADERS = {
    # Everything the pages use comes from this console: no CDN, no inline script.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _error(status: int, error: str, field: str | None = None, allowed: Any = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "field": field, "allowed": allowed}, status,
                        headers=headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)  # noqa: S101 - registered for ProblemError only
    if exc.problem.status == 401 and not _is_api(request):
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return JSONResponse(exc.problem.body(), exc.problem.status, headers=exc.problem.headers)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """Pydantic's refusals of the request's shape (the values are the admin commands' job)."""
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    first = exc.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query",
                                                                           "path")]
    name = ".".join(location) or "body"
    if first.get("type") == "json_invalid":
        return _error(400, f"body: not valid JSON ({first.get('msg', '')})", "body",
                      "a JSON object")
    return _error(422, f"{name}: {first.get('msg', 'invalid')}", name)


# FastAPI's answer when a body fails to parse for another reason than bad JSON syntax (not
# UTF-8, nested deeper than the decoder goes): generic, and naming no field.
_UNPARSED = "There was an error parsing the body"


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101
    if exc.status_code == 400 and exc.detail == _UNPARSED:
        return _error(400, "body: not readable as JSON (not UTF-8, or nested too deep)", "body",
                      "a JSON object")
    return _error(exc.status_code, str(exc.detail), "body" if exc.status_code == 413 else None,
                  headers=exc.headers)


async def _kafka(request: Request, exc: Exception) -> Response:
    status = 409 if isinstance(exc, ConcurrentChange) else 503
    if not _is_api(request):
        return web.templates.TemplateResponse(request, "error.html", {"message": str(exc)},
                                              status_code=status)
    return _error(status, str(exc))


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, web.SignIn)  # noqa: S101
    return RedirectResponse(f"/login?next={quote(exc.path)}", status_code=303)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every answer (plain ASGI: the request body passes untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in self.headers if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(console: Console) -> FastAPI:
    app = FastAPI(
        title="katagate console API",
        version="1",
        description="The KATA protection settings, rules, connection state, message "
                    "tracking, KATA Quarantine, delivery queue and Backup of a katagate "
                    "gateway. Sign in (`POST /api/login`, then send "
                    "the `X-CSRF-Token` header on every change) or send an API token "
                    "(`Authorization: Bearer ...`). Errors: `{\"error\", \"field\", "
                    "\"allowed\"}`.",
        # The interactive docs load their script from a CDN; the console reaches no network.
        docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
    )
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=console.settings.max_body_bytes)
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(KatagateError, _kafka)
    app.add_exception_handler(web.SignIn, _sign_in)
    app.include_router(auth.router)
    app.include_router(api.router)
    app.include_router(tracking_api.router)
    app.include_router(quarantine_api.router)
    app.include_router(backup_api.router)
    app.include_router(queue_api.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
