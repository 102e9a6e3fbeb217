"""The CLI's client of the projector's views: GET a JSON document with the read token.

Where the projector is and where its token lies: `--projector-url` / KATAGATE_PROJECTOR_URL
(default http://127.0.0.1:8080) and `--projector-token-file` / KATAGATE_PROJECTOR_TOKEN_FILE
(default `.katagate/cli/projector-token`, which `katagate up` makes, mode 0600). The token is
read from its file at each request and sent in a header only: never on a command line, in the
environment or in a message. The projector's `400 {error, parameter, allowed}` becomes
InvalidCommand naming the parameter and its allowed values; its 404, NotFound.
"""

from __future__ import annotations

import ipaddress
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from katagate.admin.errors import InvalidCommand, NotFound
from katagate.schemas.errors import KatagateError

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TOKEN_FILE = Path(".katagate") / "cli" / "projector-token"
TIMEOUT_S = 30.0
MAX_ANSWER = 64 * 1024 * 1024  # a page of 1000 rows is far less


class ProjectorUnavailable(KatagateError):
    """The projector cannot be asked: not reachable, the token refused, or a broken answer."""


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ProjectorReader:
    def __init__(self, url: str | None = None, token_file: str | Path | None = None,
                 timeout_s: float = TIMEOUT_S) -> None:
        self.url = (url or os.environ.get("KATAGATE_PROJECTOR_URL") or DEFAULT_URL).rstrip("/")
        self.token_file = Path(token_file or os.environ.get("KATAGATE_PROJECTOR_TOKEN_FILE")
                               or DEFAULT_TOKEN_FILE)
        self.timeout_s = timeout_s
        if not self.url.startswith(("http://", "https://")):
            raise ProjectorUnavailable(f"projector URL {self.url!r} (--projector-url, "
                                       "KATAGATE_PROJECTOR_URL) is not http:// or https://")
        if self.url.startswith("http://") and not _loopback(urlsplit(self.url).hostname):
            raise ProjectorUnavailable(
                f"projector URL {self.url!r} (--projector-url, KATAGATE_PROJECTOR_URL): the "
                "read token would cross the network in the clear; use https:// (TLS in front "
                "of the projector) or a loopback address")

    def _token(self) -> str:
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ProjectorUnavailable(
                f"the projector's read token cannot be read from {self.token_file} "
                f"(--projector-token-file, KATAGATE_PROJECTOR_TOKEN_FILE): {exc.strerror}; "
                "`katagate up` makes it, or `katagate projector token create NAME --out FILE`"
            ) from exc
        if not token or any(c.isspace() for c in token):
            raise ProjectorUnavailable(f"{self.token_file} holds no projector token")
        return token

    def get(self, path: str, query: Mapping[str, str | int | None] | None = None
            ) -> dict[str, Any]:
        given = {k: str(v) for k, v in (query or {}).items() if v is not None}
        url = self.url + quote(path) + ("?" + urlencode(given) if given else "")
        request = urllib.request.Request(url)  # noqa: S310 - http(s) checked in __init__
        # Not passed on to where a redirect points.
        request.add_unredirected_header("Authorization", f"Bearer {self._token()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310
                document = json.loads(answer.read(MAX_ANSWER))
        except urllib.error.HTTPError as exc:
            raise _refusal(exc, self.url) from exc
        except (OSError, ValueError) as exc:
            raise ProjectorUnavailable(f"the projector at {self.url} (--projector-url, "
                                       f"KATAGATE_PROJECTOR_URL) is not reachable: {exc}"
                                       ) from exc
        if not isinstance(document, dict):
            raise ProjectorUnavailable(f"the projector at {self.url} answered no JSON object")
        return document


def _refusal(error: urllib.error.HTTPError, url: str) -> KatagateError:
    try:
        body = json.loads(error.read(1024 * 1024))
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    text = str(body.get("error") or f"the projector answered {error.code}")
    if error.code == 400:
        parameter = body.get("parameter")
        allowed = body.get("allowed")
        shown = (", ".join(map(str, allowed)) if isinstance(allowed, list)
                 else str(allowed) if allowed else "")
        # The projector's words name the parameter already, as `parameter 'x': ...` does.
        message = f"{parameter}: {text}" if parameter and str(parameter) not in text else text
        if shown and shown not in message:
            message += f" (allowed: {shown})"
        return InvalidCommand(message, field=str(parameter) if parameter else None,
                              allowed=allowed)
    if error.code == 404:
        return NotFound(text, field="message_id")
    if error.code in (401, 403, 421):
        return ProjectorUnavailable(f"the projector at {url} refused the CLI ({error.code}: "
                                    f"{text}); check --projector-token-file and --projector-url")
    return ProjectorUnavailable(f"the projector at {url} answered {error.code}: {text}")
