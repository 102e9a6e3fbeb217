"""Who may read the views, decided before a view is touched (pure: the tokens come in):

1. the Host header names this projector, else 421 (a DNS-rebinding page sends its own name);
2. `/healthz` and `/readyz` are open (eventlog/health.py: liveness and readiness, no mail
   data; the same answers as on the metrics listener);
3. every other path needs `Authorization: Bearer <token>` of a token not revoked, else 401;
4. at most `max_requests` are served at once, else 503 with Retry-After (the shell counts).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from katagate.access.tokens import TokenFile, TokenRecord
from katagate.projector.http import Reply, problem

TOKEN_PREFIX = "kgp_"  # noqa: S105 - marks the projector's tokens in logs and secret scanners
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
RETRY_AFTER_S = 1
CHALLENGE = 'Bearer realm="katagate-projector"'
HOSTS_SETTING = "allowed_hosts (KATAGATE_PROJECTOR_ALLOWED_HOSTS)"


def token_file(path: Path) -> TokenFile:
    """The projector's read tokens (`ProjectorSettings.token_path`)."""
    return TokenFile(path, TOKEN_PREFIX)


def host_names(configured: Iterable[str] | None, host: str, port: int) -> frozenset[str]:
    """Every Host value accepted: each name alone and with the listen port, a name given with
    a port as given. By default the loopback names and the listen address (not a wildcard)."""
    names = list(configured) if configured is not None else [*LOOPBACK, _bracketed(host)]
    accepted: set[str] = set()
    for name in (n.lower() for n in names if n not in ("0.0.0.0", "[::]", "")):  # noqa: S104
        if _has_port(name):
            accepted.add(name)
        else:
            accepted |= {name, f"{name}:{port}"}
    return frozenset(accepted)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _has_port(name: str) -> bool:
    return name.rsplit("]", 1)[-1].count(":") == 1


def check_host(values: list[str], accepted: frozenset[str]) -> Reply | None:
    """None when the request's one Host names this projector; else the 421 answer."""
    if len(values) != 1:
        problem_text = "no Host header" if not values else "more than one Host header"
        return _misdirected(problem_text, None)
    given = values[0].strip()
    if given.lower() in accepted:
        return None
    return _misdirected(f"Host {given[:100]!r} is not a name of this projector", given[:100])


def _misdirected(text: str, host: str | None) -> Reply:
    return problem(HTTPStatus.MISDIRECTED_REQUEST, {
        "error": f"{text}: ask by a name in {HOSTS_SETTING}", "host": host})


def check_token(values: list[str], match: Callable[[str], TokenRecord | None]) -> Reply | None:
    """None when the request carries a valid bearer token; else the 401 answer naming why."""
    if not values:
        return _unauthorised("missing_token", "no bearer token: send 'Authorization: Bearer "
                                              "<token>' (katagate projector token create NAME)")
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if len(values) != 1 or scheme.lower() != "bearer" or not token:
        return _unauthorised("invalid_request",
                             "the Authorization header is not one 'Bearer <token>'")
    if match(token) is None:
        return _unauthorised("invalid_token", "the token is unknown or revoked")
    return None


def _unauthorised(code: str, text: str) -> Reply:
    challenge = CHALLENGE if code == "missing_token" else f'{CHALLENGE}, error="{code}"'
    return problem(HTTPStatus.UNAUTHORIZED, {"error": text, "problem": code},
                   (("WWW-Authenticate", challenge),))


def probe(status: int, body: dict[str, Any]) -> Reply:
    """A /healthz or /readyz answer (eventlog/health.py's `answer`) as a reply."""
    return Reply(HTTPStatus(status), json.dumps(body, separators=(",", ":")).encode() + b"\n")


def busy(limit: int) -> Reply:
    return problem(HTTPStatus.SERVICE_UNAVAILABLE, {
        "error": f"{limit} requests are being served (max_requests); retry after "
                 f"{RETRY_AFTER_S} s", "limit": limit},
        (("Retry-After", str(RETRY_AFTER_S)),))
