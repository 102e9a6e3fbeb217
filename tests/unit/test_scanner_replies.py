"""Tolerant parsing of Central Node replies: documented shapes, spelling variants, garbage."""

from __future__ import annotations

import json

import pytest

from katagate.kata_emulator.multipart import parse_multipart
from katagate.scanner.kata_api import KataApi, Refused, Submitted, refusal
from katagate.scanner.replies import Garbage, ScanStatus, parse_detects, parse_states
from katagate.scanner.transport import Body, PinMismatch, Reply, Unreachable


def test_given_the_documented_shape_then_every_scan_and_state_is_read():
    body = json.dumps({"scans": [
        {"scanId": "a1", "state": "detect"},
        {"scanId": "b2", "state": "not detected"},
        {"scanId": "c3", "state": "processing"},
    ]}).encode()
    assert parse_states(body) == ([
        ScanStatus("a1", "detect"), ScanStatus("b2", "not_detected"),
        ScanStatus("c3", "processing"),
    ], 0)


def test_given_spelling_variants_then_they_are_read_the_same():
    body = json.dumps({"scans": [
        {"scanID": "a1", "state": ["processing", "detect"]},
        {"scan_id": "b2", "state": "Not_Detected"},
        {"scanId": "c3", "states": ["timeout"]},
    ]}).encode()
    scans, skipped = parse_states(body)  # type: ignore[misc]
    assert scans == [ScanStatus("a1", "detect"), ScanStatus("b2", "not_detected"),
                     ScanStatus("c3", "timeout")]
    assert skipped == 0


def test_given_unreadable_entries_then_they_are_counted_not_fatal():
    body = json.dumps({"scans": [
        {"scanId": "a1", "state": "detect"}, {"state": "detect"}, {"scanId": "x", "state": "odd"},
        "not an object",
    ]}).encode()
    assert parse_states(body) == ([ScanStatus("a1", "detect")], 3)


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"[1,2", b'{"scans": 5}', b'"text"'])
def test_given_garbage_then_a_reason_not_an_exception(body):
    result = parse_states(body)
    assert isinstance(result, Garbage)
    assert result.reason


def test_detects_are_read_with_their_paging_token():
    body = json.dumps({"detects": [
        {"scanId": "a1", "detectType": "am", "threatName": "EICAR-Test-File"},
        {"scanID": "b2", "type": "YARA", "name": "rule_x", "details": {"offset": 5}},
        {"scanId": "c3", "detectType": "teleport"},
    ], "token": "next-page"}).encode()
    page = parse_detects(body)
    assert not isinstance(page, Garbage)
    assert [(d.scan_id, d.kind, d.name) for d in page.detects] == [
        ("a1", "am", "EICAR-Test-File"), ("b2", "yara", "rule_x")]
    assert page.detects[1].details == '{"offset": 5}'
    assert page.token == "next-page"
    assert page.skipped == 1


@pytest.mark.parametrize(
    ("status", "reason", "final"),
    [(401, "not_authorized", False), (413, "too_large", True), (429, "busy", False),
     (500, "server_error", False), (503, "server_error", False), (302, "server_error", False)],
)
def test_every_documented_code_maps_to_a_recorded_reason(status, reason, final):
    refused = refusal(Reply(status, b'{"error": "because"}', 7.0, "AA"))
    assert (refused.reason, refused.final, refused.status) == (reason, final, status)
    assert "because" in refused.detail


def test_transport_failures_map_to_their_reasons():
    assert refusal(Unreachable("refused")).reason == "unreachable"
    mismatch = refusal(PinMismatch(observed="AA:BB", pinned="CC:DD"))
    assert mismatch.reason == "certificate_mismatch"
    assert "nothing was sent" in mismatch.detail


class RecordingTransport:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.calls: list[tuple[str, str, Body, str | None]] = []

    def request(self, method, path, body=None, content_type=None):
        self.calls.append((method, path, body, content_type))
        return self.reply


def test_submit_sends_the_documented_multipart_fields():
    transport = RecordingTransport(Reply(200, b'{"scanId": "m1"}', None, "AA"))
    api = KataApi(transport, "sensor-1", instance_id="scanner-0")
    assert api.submit("m1", b"Subject: hi\r\n\r\nbody") == Submitted("m1")
    method, path, parts, content_type = transport.calls[0]
    assert method == "POST"
    assert path == "/kata/scanner/v1/sensors/sensor-1/scans?sensorInstanceId=scanner-0"
    assert content_type is not None
    assert content_type.startswith("multipart/form-data; boundary=")
    assert isinstance(parts, tuple)  # sent part after part, never joined into one copy
    body = b"".join(parts)
    assert parse_multipart(body, content_type) == {
        "scanId": b"m1", "objectType": b"file", "content": b"Subject: hi\r\n\r\nbody"}
    assert b'name="scanId"\r\n\r\nm1\r\n' in body
    assert b'name="objectType"\r\n\r\nfile\r\n' in body
    assert b'name="content"; filename="message.eml"' in body
    assert b"Subject: hi\r\n\r\nbody" in body


def test_a_poll_asks_for_every_state_in_one_request_and_204_means_none():
    transport = RecordingTransport(Reply(204, b"", None, "AA"))
    polled = KataApi(transport, "s").poll()
    assert not isinstance(polled, Refused)
    assert polled.scans == ()
    assert len(transport.calls) == 1
    assert "state=detect%2Cnot+detected%2Cprocessing%2Ctimeout%2Cerror" in transport.calls[0][1]


def test_a_garbage_poll_reply_is_refused_with_the_reason():
    polled = KataApi(RecordingTransport(Reply(200, b"<html>", None, "AA")), "s").poll()
    assert isinstance(polled, Refused)
    assert polled.reason == "garbage"


def test_only_a_detects_page_answers_as_kata():
    """Given replies a plain HTTPS server gives (404, an empty 200, HTML, JSON of another shape),
    Then none of them counts as the scanner API answering; a detects page does."""
    from katagate.scanner.kata_api import answers_as_kata
    from katagate.scanner.transport import Unreachable

    not_kata = [Reply(404, b'{"error": "not found"}', None, "AA"), Reply(200, b"", None, "AA"),
                Reply(200, b"<html>ok</html>", None, "AA"), Reply(200, b'{"ok": true}', None, "AA"),
                Reply(204, b"", None, "AA"), Unreachable("refused")]
    assert not any(answers_as_kata(reply) for reply in not_kata)
    assert answers_as_kata(Reply(200, b'{"detects": [], "token": null}', None, "AA"))
