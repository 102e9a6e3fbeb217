"""The documented KATA scanner API, as calls that return outcomes, never raise.

Every reply code the vendor documents maps to a `Refused` with the reason the scan events
record (`schemas.ScanFailureReason`), or to a value on success.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlencode

from katagate.scanner.replies import (
    DetectsPage,
    Garbage,
    ScanStatus,
    error_text,
    parse_detects,
    parse_states,
)
from katagate.scanner.transport import Body, Outcome, PinMismatch, Reply, Unreachable

ALL_STATES = ("detect", "not detected", "processing", "timeout", "error")


@dataclass(frozen=True)
class Refused:
    reason: str  # one of schemas.ScanFailureReason
    detail: str
    final: bool = False
    status: int | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Submitted:
    scan_id: str


@dataclass(frozen=True)
class Polled:
    scans: tuple[ScanStatus, ...]
    skipped: int


@dataclass(frozen=True)
class Deleted:
    scan_id: str
    existed: bool


class Transport(Protocol):
    def request(
        self, method: str, path: str, body: Body = None, content_type: str | None = None
    ) -> Outcome: ...


def refusal(outcome: Outcome) -> Refused:
    """Why a reply is not a success, in the words the scan events use."""
    if isinstance(outcome, Unreachable):
        return Refused("unreachable", outcome.detail)
    if isinstance(outcome, PinMismatch):
        return Refused(
            "certificate_mismatch",
            f"the Central Node presented key {outcome.observed}, pinned {outcome.pinned}; "
            "nothing was sent",
        )
    text = error_text(outcome.body)
    reason, final = {
        401: ("not_authorized", False),
        413: ("too_large", True),
        429: ("busy", False),
    }.get(outcome.status, ("server_error", False))
    return Refused(
        reason, f"{outcome.status} {text}".strip(), final, outcome.status, outcome.retry_after_s
    )


def answers_as_kata(outcome: Outcome) -> bool:
    """A reply in the scanner API's own shape (a detects page), which a server that merely
    speaks HTTPS does not give: the first pin needs one."""
    return (isinstance(outcome, Reply) and outcome.status == 200
            and isinstance(parse_detects(outcome.body), DetectsPage))


def multipart(fields: dict[str, str], file_field: str, content: bytes
              ) -> tuple[tuple[bytes, ...], str]:
    """The form's body as its parts, sent one after another: joined, a 200 MB message would be
    copied once more for every submission."""
    boundary = f"katagate-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            .encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
        f'filename="message.eml"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
    )
    parts.append(content)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return tuple(parts), f"multipart/form-data; boundary={boundary}"


class KataApi:
    def __init__(
        self, transport: Transport, sensor_id: str, instance_id: str | None = None
    ) -> None:
        self._transport = transport
        self._base = f"/kata/scanner/v1/sensors/{quote(sensor_id, safe='')}"
        self._instance = instance_id

    def _query(self, **params: str) -> str:
        if self._instance:
            params = {"sensorInstanceId": self._instance, **params}
        return f"?{urlencode(params)}" if params else ""

    def submit(self, scan_id: str, content: bytes) -> Submitted | Refused:
        body, content_type = multipart(
            {"scanId": scan_id, "objectType": "file"}, "content", content
        )
        outcome = self._transport.request(
            "POST", f"{self._base}/scans{self._query()}", body, content_type
        )
        if isinstance(outcome, Reply) and outcome.status == 200:
            return Submitted(scan_id)
        return refusal(outcome)

    def probe_path(self) -> str:
        """The connection check: the first detects page, which an accepted sensor always gets
        as a list, so the reply shows whether a KATA scanner API answered at all."""
        return f"{self._base}/detects?{urlencode({'limit': '1'})}"

    def state_path(self, states: tuple[str, ...] = ("processing",)) -> str:
        return f"{self._base}/scans/state{self._query(state=','.join(states))}"

    def poll(self, states: tuple[str, ...] = ALL_STATES) -> Polled | Refused:
        """The state of every scan of this sensor, in one request."""
        outcome = self._transport.request("GET", self.state_path(states))
        if isinstance(outcome, Reply):
            if outcome.status in (204, 404):  # no scans (matching), both documented
                return Polled((), 0)
            if outcome.status == 200:
                parsed = parse_states(outcome.body)
                if isinstance(parsed, Garbage):
                    return Refused("garbage", parsed.reason, status=200)
                scans, skipped = parsed
                return Polled(tuple(scans), skipped)
        return refusal(outcome)

    def detects(self, token: str | None = None, limit: int = 500) -> DetectsPage | Refused:
        params = {"detect_type": "am,sb,yara,url_reputation,ids", "limit": str(limit)}
        if token:
            params["token"] = token
        outcome = self._transport.request("GET", f"{self._base}/detects?{urlencode(params)}")
        if isinstance(outcome, Reply):
            if outcome.status in (204, 404):
                return DetectsPage((), None, 0)
            if outcome.status == 200:
                page = parse_detects(outcome.body)
                return Refused("garbage", page.reason, status=200) if isinstance(
                    page, Garbage
                ) else page
        return refusal(outcome)

    def delete(self, scan_id: str) -> Deleted | Refused:
        outcome = self._transport.request(
            "DELETE", f"{self._base}/scans/{quote(scan_id, safe='')}{self._query()}"
        )
        if isinstance(outcome, Reply) and outcome.status in (200, 204, 404):
            return Deleted(scan_id, existed=outcome.status != 404)
        return refusal(outcome)
