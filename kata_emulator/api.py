"""The KATA scanner API, independent of sockets: a request in, a response out.

Order on every request: the route must name a sensor, then the sensor is authorized (an
unknown one becomes a pending integration request), then the injected faults, then the
endpoint. Faults apply only to accepted sensors, so a fault never hides a new request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from katagate.kata_emulator.faults import Faults
from katagate.kata_emulator.multipart import SCAN_ID, FormError, parse_multipart, scan_form
from katagate.kata_emulator.store import NewScan, Store
from katagate.kata_emulator.verdicts import DETECT_TYPES, Rules, scan

log = logging.getLogger(__name__)

PREFIX = "/kata/scanner/v1/sensors/"
SENSOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
STATES = ("detect", "not detected", "processing", "timeout", "error")
FORM_OVERHEAD = 1 << 20  # room for the form's other fields and part headers
DEFAULT_DETECT_LIMIT, MAX_DETECT_LIMIT = 100, 1000
UNAUTHORIZED = {
    "new": "integration request pending",
    "pending": "integration request pending",
    "rejected": "integration request rejected",
    "mismatch": "certificate does not match the registered sensor",
}
GARBAGE = (
    b'{"scans": [{"scanId": "',
    b"<html><body>502 Bad Gateway</body></html>",
    b'{"detects": [}\x00\xff',
)


class BodyTooLarge(Exception):
    """The declared body is larger than the server will read."""


# Reads the request body, at most `limit` bytes, or raises BodyTooLarge without reading it.
BodyReader = Callable[[int], bytes]


@dataclass(frozen=True)
class Peer:
    ip: str
    fingerprint: str
    cert_pem: str


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    content_type: str
    peer: Peer


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, payload: object, *headers: tuple[str, str]) -> Response:
    body = json.dumps(payload).encode("utf-8")
    return Response(status, body, (("Content-Type", "application/json"), *headers))


def error(status: int, message: str, *headers: tuple[str, str]) -> Response:
    return json_response(status, {"error": message}, *headers)


class Api:
    def __init__(self, store: Store, rules: Callable[[], Rules], *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store, self.rules, self.clock, self.sleep = store, rules, clock, sleep
        self.rng = rng or random.Random()  # noqa: S311 - fault shares, not secrets

    def handle(self, request: Request, read_body: BodyReader) -> Response:
        try:
            return self._handle(request, read_body)
        except Exception:
            log.exception("%s %s failed", request.method, request.target)
            return error(500, "internal error")

    def _handle(self, request: Request, read_body: BodyReader) -> Response:
        url = urlsplit(request.target)
        if not url.path.startswith(PREFIX):
            return error(404, "not found")
        raw_id, _, raw_rest = url.path[len(PREFIX):].partition("/")
        sensor_id, rest = unquote(raw_id), unquote(raw_rest)  # split first: %2F stays inside
        if not SENSOR_ID.fullmatch(sensor_id):
            return error(400, "sensorId must be 1-128 letters, digits, '.', '_' or '-'")
        peer = request.peer
        status = self.store.authorize(sensor_id, peer.fingerprint, peer.cert_pem, peer.ip,
                                      self.clock())
        if status != "accepted":
            if status == "new":
                log.info("integration request from sensor %s at %s, key %s",
                         sensor_id, peer.ip, peer.fingerprint)
            return error(401, UNAUTHORIZED[status])
        faults = self.store.faults()
        if self._roll(faults.hang_rate):
            self.sleep(faults.hang_seconds)
        if self._roll(faults.error_rate):
            return error(500, "internal error (injected fault)")
        query = parse_qs(url.query, keep_blank_values=True)
        response = self._route(request.method, rest.rstrip("/"), sensor_id, query, faults,
                               request, read_body)
        if response.status == 200 and self._roll(faults.malformed_rate):
            return Response(200, self.rng.choice(GARBAGE), response.headers)
        return response

    def _route(self, method: str, rest: str, sensor_id: str, query: dict[str, list[str]],
               faults: Faults, request: Request, read_body: BodyReader) -> Response:
        if rest == "scans/state":
            return self._states(sensor_id, query) if method == "GET" else _not_allowed("GET")
        if rest == "detects":
            return self._detects(sensor_id, query) if method == "GET" else _not_allowed("GET")
        if rest == "scans":
            if method == "POST":
                return self._submit(sensor_id, query, faults, request, read_body)
            if method == "DELETE":
                return json_response(200, {"deleted": self.store.delete_scans(sensor_id)})
            return _not_allowed("POST, DELETE")
        if rest.startswith("scans/") and rest.count("/") == 1:
            if method != "DELETE":
                return _not_allowed("DELETE")
            scan_id = rest.removeprefix("scans/")
            if not SCAN_ID.fullmatch(scan_id):
                return error(400, "scanId must be 1-64 letters and digits")
            if not self.store.delete_scan(sensor_id, scan_id):
                return error(404, "no such scan")
            return json_response(200, {"scanId": scan_id, "deleted": True})
        return error(404, "not found")

    def _submit(self, sensor_id: str, query: dict[str, list[str]], faults: Faults,
                request: Request, read_body: BodyReader) -> Response:
        instance = _one(query, "sensorInstanceId")
        if instance is None or not SENSOR_ID.fullmatch(instance):
            return error(400, "sensorInstanceId is required: 1-128 letters, digits, '.', '_' "
                              "or '-'")
        too_large = error(413, f"object too large: the maximum is {faults.max_object_bytes} "
                               "bytes")
        try:
            body = read_body(faults.max_object_bytes + FORM_OVERHEAD)
            form = scan_form(parse_multipart(body, request.content_type))
        except BodyTooLarge:
            return too_large
        except FormError as exc:
            return error(400, str(exc))
        except ConnectionError:
            return error(400, "the request body is incomplete")
        if len(form.content) > faults.max_object_bytes:
            return too_large
        outcome, detects = self._verdict(form.content, faults)
        now = self.clock()
        new = NewScan(sensor_id, form.scan_id, instance, outcome, detects, len(form.content),
                      hashlib.sha256(form.content).hexdigest())
        ready_at = now + faults.parsed_latency.sample(self.rng)
        result = self.store.submit(new, now, ready_at, faults.concurrency_limit)
        if result == "busy":
            return error(429, f"too many scans in processing (limit {faults.concurrency_limit})"
                              ", retry later", ("Retry-After", "60"))
        if result == "created":
            log.info("sensor %s scan %s: %s in %.1f s", sensor_id, form.scan_id, outcome,
                     ready_at - now)
        return json_response(200, {"scanId": form.scan_id})

    def _verdict(self, content: bytes, faults: Faults) -> tuple[str, list[Any]]:
        if self._roll(faults.timeout_rate):
            return "timeout", []
        if self._roll(faults.verdict_error_rate):
            return "error", []
        detects = scan(content, self.rules())
        return ("detect" if detects else "not detected"), detects

    def _states(self, sensor_id: str, query: dict[str, list[str]]) -> Response:
        wanted = _list(query, "state")
        unknown = [s for s in wanted if s not in STATES]
        if unknown:
            return error(400, f"unknown state {unknown[0]!r}: expected {', '.join(STATES)}")
        scans = self.store.scan_states(sensor_id, self.clock())
        if not scans:
            return error(404, "no scan results")
        chosen = [{"scanId": s, "state": st} for s, st in scans if not wanted or st in wanted]
        return json_response(200, {"scans": chosen}) if chosen else Response(204)

    def _detects(self, sensor_id: str, query: dict[str, list[str]]) -> Response:
        types = _list(query, "detect_type") or list(DETECT_TYPES)
        unknown = [t for t in types if t not in DETECT_TYPES]
        if unknown:
            return error(400, f"unknown detect_type {unknown[0]!r}: expected "
                              f"{', '.join(DETECT_TYPES)}")
        limit_text = _one(query, "limit") or str(DEFAULT_DETECT_LIMIT)
        token = _one(query, "token") or "0"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_DETECT_LIMIT:
            return error(400, f"limit must be a whole number in 1..{MAX_DETECT_LIMIT}")
        if not token.isdigit():
            return error(400, "token is not one this server gave")
        found, more = self.store.detects(sensor_id, self.clock(), types, int(token),
                                         int(limit_text))
        return json_response(200, {
            "detects": [{"scanId": d.scan_id, "detectType": d.detect_type,
                         "threatName": d.threat_name, "details": d.details} for d in found],
            "token": str(found[-1].seq) if more else None,
        })

    def _roll(self, share: float) -> bool:
        return share > 0 and self.rng.random() < share


def _not_allowed(allow: str) -> Response:
    return error(405, "method not allowed", ("Allow", allow))


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _list(query: dict[str, list[str]], name: str) -> list[str]:
    """Comma-separated and/or repeated parameters, blanks dropped."""
    return [v.strip() for value in query.get(name, []) for v in value.split(",") if v.strip()]
