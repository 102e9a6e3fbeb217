"""The projector's views (connection state, quarantine usage, messages waiting for a verdict),
fetched over its HTTP API with the console's read token: the console folds no mail events
itself."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from katagate.console.problems import Problem, ProblemError


class ProjectorClient:
    def __init__(self, base_url: str, timeout_s: float, token_file: Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.token_file = token_file

    def token(self) -> str | None:
        """The read token, read at each request: a token replaced in the file counts at once."""
        if self.token_file is None:
            return None
        try:
            return self.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ProblemError(Problem(502, "the projector token file (projector_token_file) "
                                            f"cannot be read: {exc}")) from exc

    def get(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        url = self.base_url + quote(path)
        if query:
            url += "?" + urlencode(query)
        if not url.startswith(("http://", "https://")):
            raise ProblemError(Problem(502, f"projector URL {self.base_url!r} is not http(s)"))
        request = urllib.request.Request(url)  # noqa: S310 - checked http(s) above
        token = self.token()
        if token:
            # Not passed on to where a redirect points.
            request.add_unredirected_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310
                document: dict[str, Any] = json.loads(answer.read())
                return document
        except urllib.error.HTTPError as exc:
            # The projector names the bad parameter; pass its answer on in our own shape.
            try:
                body = json.loads(exc.read())
            except ValueError:
                body = {}
            if exc.code in (401, 421):  # our setup, not the caller's request
                raise ProblemError(Problem(502, f"the projector refused the console "
                                                f"({exc.code}): {body.get('error', '')}; check "
                                                "projector_token_file and projector_url")) from exc
            raise ProblemError(Problem(
                exc.code if exc.code in (400, 404) else 502,
                str(body.get("error", f"projector answered {exc.code}")),
                body.get("parameter") or body.get("field"), body.get("allowed"),
            )) from exc
        except (OSError, ValueError) as exc:
            raise ProblemError(Problem(
                502, f"the projector at {self.base_url} is not reachable: {exc}")) from exc

    def connection(self) -> dict[str, Any]:
        return self.get("/state/connection")

    def quarantine_usage(self) -> dict[str, Any]:
        return self.get("/state/quarantine")

    def waiting(self, limit: int | None = None, after: str | None = None) -> dict[str, Any]:
        query = {}
        if limit is not None:
            query["limit"] = str(limit)
        if after is not None:
            query["after"] = after
        return self.get("/quarantine/messages", query)

    def all_waiting(self, max_pages: int = 100) -> list[dict[str, Any]]:
        """Every message waiting, page by page (the quarantine's own limits bound it)."""
        messages: list[dict[str, Any]] = []
        after = None
        for _ in range(max_pages):
            page = self.waiting(1000, after)
            messages += page["messages"]
            after = page.get("next")
            if after is None:
                break
        return messages
