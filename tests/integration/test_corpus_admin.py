"""The admin API part of the bad-input corpus (tests/corpus/admin/cases.json) against the
console on the real broker: malformed bodies get their status, and every injection string in
every field is refused naming the field or stored exactly and shown escaped; nothing ever 5xx."""

from __future__ import annotations

import codecs
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console_client import console_client, sign_in

pytestmark = pytest.mark.kafka

CASES = json.loads((Path(__file__).resolve().parents[1] / "corpus" / "admin" / "cases.json")
                   .read_text())
_REPEAT = re.compile(r"<<REPEAT (\d+)>>(.*?)<<END>>", re.DOTALL)


def expand(text: str) -> str:
    return _REPEAT.sub(lambda m: m.group(2) * int(m.group(1)), text)


@pytest.fixture(scope="module")
def console(tmp_path_factory, kafka_bootstrap) -> Iterator[Any]:
    from tests.conftest import ensure_namespace
    kafka = ensure_namespace(kafka_bootstrap)
    with console_client(tmp_path_factory.mktemp("console"), kafka) as (client, _console, _clock):
        csrf = sign_in(client)
        client.headers["X-CSRF-Token"] = csrf
        yield client


@pytest.mark.parametrize("case", CASES["requests"], ids=[c["name"] for c in CASES["requests"]])
def test_each_malformed_request_gets_its_status(console, case):
    body = codecs.escape_decode(expand(case["body"]).encode())[0]
    answer = console.request(case["method"], case["path"], content=body,
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == case["status"], answer.text[:300]
    if answer.status_code in (400, 413, 422):
        assert answer.json()["field"], answer.text[:300]  # named, never a bare "error"


INJECTIONS = [expand(s) for s in CASES["injections"]]


def _field_value(field: str, payload: str) -> Any:
    return [payload] if field in ("senders", "recipients") else payload


@pytest.mark.parametrize("field", CASES["fields"]["settings"])
def test_every_injection_in_a_setting_is_refused_naming_the_field(console, field):
    for payload in INJECTIONS:
        answer = console.put("/api/settings", json={field: payload})
        assert answer.status_code == 422, (payload, answer.text[:300])
        assert answer.json()["field"] == field, answer.text[:300]


@pytest.mark.parametrize("field", CASES["fields"]["rule"])
def test_every_injection_in_a_rule_field_is_refused_or_kept_exactly_and_shown_escaped(
        console, field):
    kept = 0
    for n, payload in enumerate(INJECTIONS):
        rule_id = f"inj-{field}-{n}"
        body: dict[str, Any] = {"rule_id": rule_id, "name": f"rule {n}"}
        body[field] = _field_value(field, payload)
        answer = console.post("/api/rules", json=body)
        assert answer.status_code < 500, (payload, answer.text[:300])
        if answer.status_code >= 400:
            assert answer.json()["field"] in (field, f"{field}[0]", "rule_id"), answer.text
            continue
        assert answer.status_code == 201, answer.text[:300]
        stored = console.get(f"/api/rules/{body['rule_id']}").json()
        assert stored[field] == body[field], (payload, stored)
        kept += 1
        page = console.get("/rules").text
        assert "<script>alert(1)</script>" not in page
        if field == "name":
            assert html.escape(payload, quote=False) in page or payload not in page
    if field == "name":  # free text: markup and quotes are a name like any other
        assert kept >= 5, f"only {kept} of {len(INJECTIONS)} names were kept"
