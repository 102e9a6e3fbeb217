"""The MIME and Central Node parts of the bad-input corpus (tests/corpus/mime/cases.json,
tests/corpus/kata/cases.json): each case within its time, with the outcome the file names."""

from __future__ import annotations

import codecs
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from decider import mime_guard
from decider.subject_tag import tag_subject
from ingest.subject import decode_subject
from scanner.replies import Garbage, parse_detects, parse_states

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
_REPEAT = re.compile(r"<<REPEAT (\d+)>>(.*?)<<END>>", re.DOTALL)


def _bytes(text: str) -> bytes:
    expanded = _REPEAT.sub(lambda m: m.group(2) * int(m.group(1)), text)
    return codecs.escape_decode(expanded.encode("utf-8"))[0]


def _cases(kind: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((CORPUS / kind / "cases.json").read_text())["cases"]
    return cases


MIME = _cases("mime")
KATA = _cases("kata")


def build(case: dict[str, Any]) -> bytes:
    repeated = "".join(case["repeat"].replace("{i}", str(i)) for i in range(case["times"]))
    return _bytes(case["head"] + repeated + case["tail"])


def timed(seconds: float, call: Any, *args: Any) -> Any:
    began = time.monotonic()
    result = call(*args)
    assert time.monotonic() - began < seconds, f"{call.__name__} took over {seconds} s"
    return result


@pytest.mark.parametrize("case", MIME, ids=[c["name"] for c in MIME])
def test_each_hostile_mime_case_is_bounded_and_gets_its_outcome(case):
    raw = build(case)
    expect = case["expect"]
    inspection = timed(case.get("within_s", 3.0), mime_guard.inspect, raw)
    if "problem" in expect:
        assert any(expect["problem"] in p for p in inspection.problems), inspection.problems
    subject = timed(3.0, decode_subject, raw)
    assert subject is None or ("\n" not in subject and "\r" not in subject)
    if "subject_contains" in expect:
        assert expect["subject_contains"] in (subject or "")
    result = timed(3.0, tag_subject, raw, "[KATA detect]")
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


@pytest.mark.parametrize("case", KATA, ids=[c["name"] for c in KATA])
def test_each_malformed_central_node_reply_is_garbage_or_read_as_named(case):
    body = _bytes(case["body"])
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
