"""The scanner API without sockets: authorization order, endpoints, response shapes, faults."""

from __future__ import annotations

import json
import random

import pytest

from katagate.kata_emulator.api import Api, BodyTooLarge, Peer, Request, Response
from katagate.kata_emulator.faults import Faults
from katagate.kata_emulator.store import Store
from katagate.kata_emulator.verdicts import EICAR, Rules

BASE = "/kata/scanner/v1/sensors/s1"
PEER = Peer("10.0.0.5", "AA:" * 31 + "AA", "PEM")
CT = "multipart/form-data; boundary=b0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def form(scan_id: str, content: bytes, object_type: str = "file") -> bytes:
    parts = [("content", content), ("scanId", scan_id.encode()),
             ("objectType", object_type.encode())]
    out = b"".join(b"--b0\r\nContent-Disposition: form-data; name=\"" + n.encode() + b"\"\r\n\r\n"
                   + v + b"\r\n" for n, v in parts)
    return out + b"--b0--\r\n"


@pytest.fixture
def setup(tmp_path):
    store, clock = Store(tmp_path), Clock()
    api = Api(store, lambda: Rules(), clock=clock, rng=random.Random(1), sleep=clock_sleep(clock))
    return api, store, clock


def clock_sleep(clock: Clock):
    def sleep(seconds: float) -> None:
        clock.now += seconds
    return sleep


def call(api: Api, method: str, target: str, body: bytes = b"", peer: Peer = PEER) -> Response:
    def read(limit: int) -> bytes:
        if len(body) > limit:
            raise BodyTooLarge
        return body
    return api.handle(Request(method, target, CT, peer), read)


def payload(response: Response) -> object:
    assert ("Content-Type", "application/json") in response.headers
    return json.loads(response.body)


def accepted(api: Api, store: Store) -> None:
    assert call(api, "GET", BASE + "/scans/state").status == 401
    store.decide("s1", "accepted", now=0)


def test_first_contact_is_a_pending_request(setup):
    api, store, _ = setup
    response = call(api, "GET", BASE + "/scans/state")
    assert (response.status, payload(response)) == (401, {"error": "integration request pending"})
    assert store.sensor("s1").status == "pending"
    other = Peer("10.0.0.5", "BB:" * 31 + "BB", "PEM")
    mismatch = call(api, "GET", BASE + "/scans/state", peer=other)
    assert payload(mismatch) == {"error": "certificate does not match the registered sensor"}
    store.decide("s1", "rejected", now=0)
    assert payload(call(api, "GET", BASE + "/detects")) == {
        "error": "integration request rejected"}


def test_bad_sensor_id_and_foreign_paths_register_nothing(setup):
    api, store, _ = setup
    assert call(api, "GET", "/kata/scanner/v1/sensors/-bad/scans/state").status == 400
    assert call(api, "GET", "/kata/scanner/v1/sensors/a%2Fb/scans").status == 400
    assert call(api, "GET", "/other").status == 404
    assert store.sensors() == []


def test_submit_poll_detects_delete(setup):
    api, store, clock = setup
    accepted(api, store)
    store.set_faults(Faults(latency="30"))
    target = BASE + "/scans?sensorInstanceId=i1"
    assert payload(call(api, "GET", BASE + "/scans/state")) == {"error": "no scan results"}
    assert payload(call(api, "POST", target, form("bad1", EICAR))) == {"scanId": "bad1"}
    assert payload(call(api, "POST", target, form("ok1", b"hello"))) == {"scanId": "ok1"}
    assert payload(call(api, "GET", BASE + "/scans/state")) == {"scans": [
        {"scanId": "bad1", "state": "processing"}, {"scanId": "ok1", "state": "processing"}]}
    assert call(api, "GET", BASE + "/scans/state?state=detect,not+detected").status == 204
    assert payload(call(api, "GET", BASE + "/detects")) == {"detects": [], "token": None}
    clock.now += 30
    assert payload(call(api, "GET", BASE + "/scans/state?state=detect&state=not%20detected")) == {
        "scans": [{"scanId": "bad1", "state": "detect"}, {"scanId": "ok1",
                                                          "state": "not detected"}]}
    assert payload(call(api, "GET", BASE + "/detects?detect_type=am,sb&limit=10")) == {
        "detects": [{"scanId": "bad1", "detectType": "am", "threatName": "EICAR-Test-File",
                     "details": "EICAR test string in the object"}],
        "token": None}
    assert payload(call(api, "DELETE", BASE + "/scans/bad1")) == {"scanId": "bad1",
                                                                  "deleted": True}
    assert payload(call(api, "DELETE", BASE + "/scans/bad1")) == {"error": "no such scan"}
    assert payload(call(api, "DELETE", BASE + "/scans")) == {"deleted": 1}
    assert call(api, "GET", BASE + "/scans/state").status == 404


def test_resubmitting_a_scan_id_is_idempotent(setup):
    api, store, clock = setup
    accepted(api, store)
    target = BASE + "/scans?sensorInstanceId=i1"
    call(api, "POST", target, form("a1", b"clean"))
    assert payload(call(api, "POST", target, form("a1", EICAR))) == {"scanId": "a1"}
    clock.now += 1
    assert payload(call(api, "GET", BASE + "/scans/state")) == {
        "scans": [{"scanId": "a1", "state": "not detected"}]}


def test_detects_page_with_a_token(setup):
    api, store, _ = setup
    accepted(api, store)
    for i in range(3):
        call(api, "POST", BASE + "/scans?sensorInstanceId=i1", form(f"s{i}", EICAR))
    first = payload(call(api, "GET", BASE + "/detects?limit=2"))
    assert [d["scanId"] for d in first["detects"]] == ["s0", "s1"]
    assert isinstance(first["token"], str)
    second = payload(call(api, "GET", BASE + f"/detects?limit=2&token={first['token']}"))
    assert ([d["scanId"] for d in second["detects"]], second["token"]) == (["s2"], None)


@pytest.mark.parametrize(("target", "status", "word"), [
    ("/scans", 400, "sensorInstanceId"),
    ("/scans/state?state=done", 400, "unknown state 'done'"),
    ("/detects?detect_type=virus", 400, "unknown detect_type"),
    ("/detects?limit=0", 400, "limit"),
    ("/detects?token=abc", 400, "token"),
    ("/nowhere", 404, "not found"),
    ("/scans/a/b", 404, "not found"),
])
def test_bad_requests(setup, target, status, word):
    api, store, _ = setup
    accepted(api, store)
    method = "POST" if target == "/scans" else "GET"
    response = call(api, method, BASE + target, form("a", b"x"))
    assert response.status == status
    assert word in payload(response)["error"]  # type: ignore[index]


def test_wrong_method_is_405(setup):
    api, store, _ = setup
    accepted(api, store)
    response = call(api, "PUT", BASE + "/scans/state")
    assert (response.status, ("Allow", "GET") in response.headers) == (405, True)
    assert call(api, "GET", BASE + "/scans/x1").status == 405


def test_form_errors_name_the_field(setup):
    api, store, _ = setup
    accepted(api, store)
    target = BASE + "/scans?sensorInstanceId=i1"
    response = call(api, "POST", target, form("a-1", b"x"))
    assert (response.status, "scanId" in payload(response)["error"]) == (400, True)  # type: ignore[index]
    response = call(api, "POST", target, form("a1", b"x", "url"))
    assert "objectType" in payload(response)["error"]  # type: ignore[index]


def test_limits_and_injected_faults(setup):
    api, store, clock = setup
    accepted(api, store)
    target = BASE + "/scans?sensorInstanceId=i1"
    store.set_faults(Faults(max_object_bytes=10))
    assert call(api, "POST", target, form("big", b"x" * 11)).status == 413
    store.set_faults(Faults(max_object_bytes=10, latency="60", concurrency_limit=1))
    assert call(api, "POST", target, form("a1", b"x")).status == 200
    busy = call(api, "POST", target, form("a2", b"x"))
    assert (busy.status, ("Retry-After", "60") in busy.headers) == (429, True)
    store.set_faults(Faults(error_rate=1.0))
    assert payload(call(api, "GET", BASE + "/scans/state"))["error"].startswith(  # type: ignore[index]
        "internal error")
    store.set_faults(Faults(malformed_rate=1.0))
    garbled = call(api, "GET", BASE + "/scans/state")
    assert garbled.status == 200
    with pytest.raises(ValueError):  # noqa: PT011 - any JSON error
        json.loads(garbled.body)
    store.set_faults(Faults(hang_rate=1.0, hang_seconds=7))
    before = clock.now
    assert call(api, "GET", BASE + "/scans/state").status == 200
    assert clock.now - before == 7
    store.set_faults(Faults(timeout_rate=1.0))
    call(api, "POST", target, form("t1", EICAR))
    store.set_faults(Faults(verdict_error_rate=1.0))
    call(api, "POST", target, form("e1", EICAR))
    states = dict((s["scanId"], s["state"]) for s in payload(  # type: ignore[index]
        call(api, "GET", BASE + "/scans/state?state=timeout,error"))["scans"])
    assert states == {"t1": "timeout", "e1": "error"}
