"""The MIME and Central Node parts of the bad-input corpus (tests/corpus/mime/cases.json,
tests/corpus/kata/cases.json), each case within its time, with the outcome the file names.

A MIME case goes through what handles such a message in production: ingest's DATA checks and
subject reader, the subject tagger, the NDR and the scanner's upload to the Central Node. The
same messages cross the running gateway in tests/e2e/test_mime_corpus.py."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from katagate.decider.ndr import MAX_ORIGINAL_HEADERS, build_ndr
from katagate.decider.subject_tag import tag_subject
from katagate.ingest.handler import inspect
from katagate.ingest.settings import IngestSettings
from katagate.ingest.subject import decode_subject
from katagate.kata_emulator.multipart import parse_multipart, scan_form
from katagate.scanner.kata_api import KataApi, Submitted
from katagate.scanner.replies import Garbage, parse_detects, parse_states
from katagate.scanner.transport import Body, Outcome, Reply
from tests.corpus_files import MIME, corpus_bytes, corpus_cases, mime_message

KATA = corpus_cases("kata")
TAG = "[KATA detect]"
CUT_NOTE = b"X-Katagate-Note: original headers cut at 16 KiB"
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def timed(seconds: float, call: Any, *args: Any, **kwargs: Any) -> Any:
    began = time.monotonic()
    result = call(*args, **kwargs)
    assert time.monotonic() - began < seconds, f"{call.__name__} took over {seconds} s"
    return result


def within(case: dict[str, Any]) -> float:
    return float(case.get("within_s", 3.0))


def header_section(raw: bytes) -> bytes:
    """Every corpus message has its header lines first (an empty header section in none)."""
    return raw.split(b"\r\n\r\n", 1)[0]


mime_cases = pytest.mark.parametrize("case", MIME, ids=[c["name"] for c in MIME])


@mime_cases
def test_ingest_answers_each_hostile_mime_case_and_reads_its_subject(case):
    raw, expect = mime_message(case["name"]), case["expect"]
    inspected = timed(within(case), inspect, raw, IngestSettings())  # DATA's checks, as run
    if expect["smtp"] == "250":
        assert inspected.refusal is None, inspected.refusal
    else:
        assert str(inspected.refusal).startswith(expect["smtp"] + " "), inspected.refusal
    # The reader alone, also on a message ingest refuses before reading its Subject.
    subject = timed(within(case), decode_subject, raw)
    assert subject == expect["subject"]
    assert subject is None or ("\n" not in subject and "\r" not in subject)
    if "subject_contains" in expect:
        assert expect["subject_contains"] in (subject or "")
    assert inspected.subject == (subject if inspected.refusal is None else None)


@mime_cases
def test_the_subject_tagger_changes_only_the_subject_of_each_case(case):
    raw, expect = mime_message(case["name"]), case["expect"]
    result = timed(within(case), tag_subject, raw, TAG)
    assert result.tagged is expect["tagged"], result.note
    if not result.tagged:
        assert result.data is raw
        return
    # Only the Subject changed (or was added), its continuation lines included: every new
    # line is the tagged Subject line or folded white space, never a field of its own.
    added = [line for line in set(result.data.split(b"\r\n")) - set(raw.split(b"\r\n"))]
    starts = [line for line in added if not line.startswith((b" ", b"\t"))]
    assert len(starts) == 1, starts[:3]
    assert starts[0].startswith(b"Subject: [KATA detect]")
    if "no_new_line_starting" in expect:
        field = expect["no_new_line_starting"].encode()
        assert result.data.count(b"\n" + field) == raw.count(b"\n" + field)


def headers_part(ndr: bytes) -> bytes:
    """The text/rfc822-headers part's content, as sent."""
    found = re.search(rb'boundary="([^"]+)"', ndr)
    assert found
    end = b"\r\n--" + found.group(1) + b"--\r\n"
    assert ndr.endswith(end)
    start = re.search(rb"Content-Type: text/rfc822-headers\r\n"
                      rb"Content-Transfer-Encoding: [78]bit\r\n\r\n", ndr)
    assert start
    return ndr[start.end(): -len(end)]


@mime_cases
def test_the_ndr_returns_a_bounded_prefix_of_each_cases_headers_and_nothing_injected(case):
    raw, expect = mime_message(case["name"]), case["expect"]
    # Apply passes the message's first MiB; build_ndr finds the header section's end itself,
    # so the whole message gives the same part.
    ndr = timed(within(case), build_ndr, original=raw, envelope_from="alice@example.org",
                recipients=["bob@example.net"], reporting_mta="gw.example.net",
                reason="KATA detected a threat", status="5.7.1", diagnostic=None, arrival=NOW,
                now=NOW, message_id="M0123456789", dsn_id="M0123456789-ndr")
    part, section = headers_part(ndr), header_section(raw)
    if expect["ndr_headers"] == "whole":
        assert part == section
    else:
        assert part.endswith(CUT_NOTE), part[-200:]
        kept = part[: -len(CUT_NOTE)]  # whole lines, each with its CRLF
        assert kept == b"" or kept.endswith(b"\r\n")
        assert section.startswith(kept)
        assert len(kept) <= MAX_ORIGINAL_HEADERS
    assert b"\n" not in ndr.replace(b"\r\n", b"")
    if "no_new_line_starting" in expect:
        field = expect["no_new_line_starting"].encode()
        assert ndr.count(b"\n" + field) == section.count(b"\n" + field) == 0


class Recorder:
    """A Central Node that takes every upload and keeps it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Body, str | None]] = []

    def request(self, method: str, path: str, body: Body = None,
                content_type: str | None = None) -> Outcome:
        self.requests.append((method, path, body, content_type))
        return Reply(200, b"", None, "")


@mime_cases
def test_the_scanner_uploads_each_case_byte_for_byte(case):
    raw = mime_message(case["name"])
    central_node = Recorder()
    submitted = timed(within(case), KataApi(central_node, "sensor-1").submit, "M0123", raw)
    assert submitted == Submitted("M0123")
    ((method, path, body, content_type),) = central_node.requests
    assert (method, path) == ("POST", "/kata/scanner/v1/sensors/sensor-1/scans")
    assert content_type is not None
    assert body is not None
    sent = body if isinstance(body, bytes) else b"".join(body)
    # Read back as a Central Node would: the emulator's form reader, written apart from ours.
    form = timed(within(case), scan_form, parse_multipart(sent, content_type))
    assert (form.scan_id, form.object_type) == ("M0123", "file")
    assert form.content == raw


@pytest.mark.parametrize("case", KATA, ids=[c["name"] for c in KATA])
def test_each_malformed_central_node_reply_is_garbage_or_read_as_named(case):
    body = corpus_bytes(case["body"])
    states = timed(2.0, parse_states, body)
    if case["states"] == "garbage":
        assert isinstance(states, Garbage), states
        assert states.reason
    else:
        assert not isinstance(states, Garbage), states
        scans, skipped = states
        assert [len(scans), skipped] == case["states"]
    detects = timed(2.0, parse_detects, body)
    if case["detects"] == "garbage":
        assert isinstance(detects, Garbage), detects
    else:
        assert not isinstance(detects, Garbage), detects
        assert [len(detects.detects), detects.skipped] == case["detects"]
