"""Every validation rule of the KATA Protection window, a rule's fields and the quarantine
commands, through the HTTP API: a bad value gets 422 with `{"error", "field", "allowed"}` —
the admin commands' own message and range — every bad field of one request is named, and
nothing reaches Kafka (the app under test has none: a request that got that far would fail
with 503, not 422). Also CSRF (403 before anything is read), malformed and oversized bodies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from katagate.admin.rules import RULE_FIELDS
from tests.console_client import console_client, sign_in

KATA_FIELDS = [name for name in RULE_FIELDS if name.startswith("kata.")]


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory):
    """One app and one session for the module: nothing here changes any state."""
    with console_client(tmp_path_factory.mktemp("console")) as (client, console, _clock):
        yield client, sign_in(client), console


@pytest.fixture
def api(signed_in):
    """`api(method, path, json)`: the signed-in client, with the CSRF token on changes."""
    client, csrf, _console = signed_in

    def call(method: str, path: str, body: object = None, **kwargs):
        return client.request(method, path, json=body, headers={"X-CSRF-Token": csrf},
                              **kwargs)

    call.client = client  # type: ignore[attr-defined]
    call.app = client.app  # type: ignore[attr-defined]
    return call


def refused(answer, field: str, message: str, allowed=None):
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["field"] == field
    assert body["error"] == message
    if allowed is not None:
        assert body["allowed"] == allowed
    return body


SETTINGS_CASES = [
    ({"central_node_address": "192.0.2"}, "central_node_address",
     "central_node_address: must be an IPv4 address (e.g. 192.0.2.10), got '192.0.2'",
     "the unicast IPv4 address of a server, e.g. 192.0.2.10"),
    ({"central_node_address": "kata.example.com"}, "central_node_address",
     "central_node_address: must be an IPv4 address (e.g. 192.0.2.10), got 'kata.example.com'",
     None),
    ({"central_node_address": "2001:db8::1"}, "central_node_address",
     "central_node_address: must be an IPv4 address (e.g. 192.0.2.10), got '2001:db8::1'",
     None),
    ({"central_node_address": "224.0.0.1"}, "central_node_address",
     "central_node_address: must be the unicast IPv4 address of a server, got '224.0.0.1'",
     None),
    ({"central_node_address": "0.0.0.0"}, "central_node_address",  # noqa: S104 - refused
     "central_node_address: must be the unicast IPv4 address of a server, got '0.0.0.0'",
     None),
    ({"central_node_port": 0}, "central_node_port",
     "central_node_port: must be an integer in 1..65535, got 0", "an integer in 1..65535"),
    ({"central_node_port": 65536}, "central_node_port",
     "central_node_port: must be an integer in 1..65535, got 65536", None),
    ({"central_node_port": "https"}, "central_node_port",
     "central_node_port: must be an integer in 1..65535, got 'https'", None),
    ({"central_node_port": True}, "central_node_port",
     "central_node_port: must be an integer in 1..65535, got True", None),
    ({"central_node_port": 443.5}, "central_node_port",
     "central_node_port: must be an integer in 1..65535, got 443.5", None),
    ({"response_timeout_s": 59}, "response_timeout_s",
     "response_timeout_s: must be an integer in 60..86400 seconds, got 59",
     "an integer in 60..86400 seconds"),
    ({"response_timeout_s": 86401}, "response_timeout_s",
     "response_timeout_s: must be an integer in 60..86400 seconds, got 86401", None),
    ({"quarantine_max_size_mb": 0}, "quarantine_max_size_mb",
     "quarantine_max_size_mb: must be an integer in 1..8796093022207 MB, got 0",
     "an integer in 1..8796093022207 MB"),
    ({"quarantine_max_bytes": 1048575}, "quarantine_max_bytes",
     "quarantine_max_bytes: must be an integer in 1048576..9223372036854775807 bytes "
     "(1 MB = 1048576 bytes), got 1048575", None),
    ({"quarantine_max_messages": 0}, "quarantine_max_messages",
     "quarantine_max_messages: must be an integer in 1..4294967296, got 0",
     "an integer in 1..4294967296"),
    ({"quarantine_max_messages": 4294967297}, "quarantine_max_messages",
     "quarantine_max_messages: must be an integer in 1..4294967296, got 4294967297", None),
    ({"ndr_enabled": "maybe"}, "ndr_enabled", "ndr_enabled: must be on or off, got 'maybe'",
     ["on", "off"]),
    ({"poll_interval_s": 0}, "poll_interval_s",
     "poll_interval_s: must be an integer in 1..3600 seconds, got 0", None),
    ({"colour": "blue"}, "colour",
     "colour: unknown setting; known settings: central_node_address, central_node_port, "
     "response_timeout_s, quarantine_max_bytes, quarantine_max_messages, ndr_enabled, "
     "poll_interval_s, backup_max_age_days, backup_max_bytes, on_unavailable, hold_outcome, "
     "verdict_header_name, verdict_header_format, verdict_cache_ttl_s, quarantine_max_size_mb",
     None),
    ({"quarantine_max_size_mb": 2, "quarantine_max_bytes": 2097152}, "quarantine_max_size_mb",
     "quarantine_max_size_mb: give the quarantine size once, in MB or in bytes "
     "(quarantine_max_bytes), not both", None),
]


@pytest.mark.parametrize(("body", "field", "message", "allowed"), SETTINGS_CASES,
                         ids=[next(iter(c[0])) + "=" + str(next(iter(c[0].values())))
                              for c in SETTINGS_CASES])
def test_a_bad_setting_is_refused_naming_the_field_and_its_range(api, body, field, message,
                                                                  allowed):
    refused(api("PUT", "/api/settings", body), field, message, allowed)


def test_no_setting_named_is_refused(api):
    refused(api("PUT", "/api/settings", {}), "settings",
            "settings: name at least one setting to change (central_node_address, "
            "central_node_port, response_timeout_s, quarantine_max_bytes, "
            "quarantine_max_messages, ndr_enabled, poll_interval_s, backup_max_age_days, "
            "backup_max_bytes, on_unavailable, hold_outcome, verdict_header_name, "
            "verdict_header_format, verdict_cache_ttl_s, quarantine_max_size_mb)")


def test_every_bad_setting_of_one_apply_is_named_in_order(api):
    body = refused(api("PUT", "/api/settings", {
        "central_node_address": "10.0.0", "central_node_port": "443", "response_timeout_s": 10,
        "quarantine_max_size_mb": -1, "quarantine_max_messages": "lots"}),
        "central_node_address",
        "central_node_address: must be an IPv4 address (e.g. 192.0.2.10), got '10.0.0'")
    assert [e["field"] for e in body["errors"]] == [
        "central_node_address", "response_timeout_s", "quarantine_max_size_mb",
        "quarantine_max_messages"]
    assert all(e["error"].startswith(e["field"] + ": ") for e in body["errors"])


RULE_CASES = [
    ({"kata": {"action": "quarantine"}}, "kata.action",
     "kata.action: must be one of delete, reject, skip, got 'quarantine'",
     ["delete", "reject", "skip"]),
    ({"kata": {"tag": ""}}, "kata.tag",
     "kata.tag: must be 1..255 characters, not empty or only spaces, got ''",
     "one line of 1..255 characters, without control characters"),
    ({"kata": {"tag": "   "}}, "kata.tag",
     "kata.tag: must be 1..255 characters, not empty or only spaces, got '   '", None),
    ({"kata": {"tag": "x" * 256}}, "kata.tag",
     "kata.tag: must be 1..255 characters, got 256 characters", None),
    ({"kata": {"tag": "[KATA]\r\nBcc: victim@example.com"}}, "kata.tag",
     "kata.tag: must not contain line breaks or control characters, got U+000D at "
     "character 7", None),
    ({"kata": {"tag": "[KATA]\u2028x"}}, "kata.tag",
     "kata.tag: must not contain line breaks or control characters, got LINE SEPARATOR at "
     "character 7", None),
    ({"kata": {"tag": 7}}, "kata.tag", "kata.tag: must be text of 1..255 characters, got 7",
     None),
    ({"kata": {"enabled": "sometimes"}}, "kata.enabled",
     "kata.enabled: must be on or off, got 'sometimes'", None),
    ({"kata": {"backup": 2}}, "kata.backup", "kata.backup: must be on or off, got 2", None),
    ({"kata": {"verdict": "x"}}, "kata.verdict",
     "kata.verdict: unknown rule field; known fields: name, enabled, position, senders, "
     "recipients, kata.enabled, kata.action, kata.tag, kata.backup, kata.on_unavailable", None),
    ({"kata": {"on_unavailable": "queue"}}, "kata.on_unavailable",
     "kata.on_unavailable: must be one of global, skip, hold, tempfail, got 'queue'",
     ["global", "skip", "hold", "tempfail"]),
    ({"name": ""}, "name", "name: must be 1..128 characters, not empty or only spaces, got ''",
     None),
    ({"position": -1}, "position", "position: must be an integer in 0..2147483646, got -1",
     "an integer in 0..2147483646"),
    ({"senders": []}, "senders",
     "senders: must list at least one address pattern (e.g. '*@example.com', or '*' for any), "
     "got []", None),
    ({"recipients": ["bob @example.net"]}, "recipients",
     "recipients: a pattern must not contain spaces, got 'bob @example.net'", None),
    ({"enabled": "yes please"}, "enabled", "enabled: must be on or off, got 'yes please'",
     None),
]


@pytest.mark.parametrize(("body", "field", "message", "allowed"), RULE_CASES,
                         ids=[c[1] for c in RULE_CASES])
def test_a_bad_rule_field_is_refused_when_creating_or_changing(api, body, field, message,
                                                               allowed):
    refused(api("POST", "/api/rules", {"rule_id": "sales", **body}), field, message, allowed)
    refused(api("PUT", "/api/rules/sales", body), field, message, allowed)
    if "kata" in body:
        refused(api("PUT", "/api/rules/sales/kata", body["kata"]), field, message, allowed)


@pytest.mark.parametrize(("rule_id", "message"), [
    ("Sales Team", "rule_id: must be 1..64 lower-case letters, digits, '-' or '_', starting "
                   "with a letter or digit, got 'Sales Team'"),
    ("-x", "rule_id: must be 1..64 lower-case letters, digits, '-' or '_', starting with a "
           "letter or digit, got '-x'"),
])
def test_a_bad_rule_id_is_refused(api, rule_id, message):
    refused(api("POST", "/api/rules", {"rule_id": rule_id}), "rule_id", message)
    if "/" not in rule_id and " " not in rule_id:
        refused(api("PUT", f"/api/rules/{rule_id}", {"name": "x"}), "rule_id", message)
        refused(api("DELETE", f"/api/rules/{rule_id}"), "rule_id", message)


DEFAULT_FIXED = ("it handles mail no rule matches, so it matches any sender and recipient, is "
                 "always enabled and stays last; only its KATA section can be changed")


def test_the_default_rule_is_not_created_deleted_moved_or_narrowed(api):
    refused(api("POST", "/api/rules", {"rule_id": "default"}), "rule_id",
            "rule_id: 'default' is the built-in rule for mail no rule matches and exists "
            "already; change its KATA section with `rules set default` (--kata, --kata-action, "
            "--tag, --backup)")
    refused(api("DELETE", "/api/rules/default"), "rule_id",
            f"rule_id: the default rule cannot be deleted: {DEFAULT_FIXED}")
    for field, value in (("position", 5), ("enabled", False), ("senders", ["*@x.example"])):
        body = refused(api("PUT", "/api/rules/default", {field: value, "kata": {
            "action": "skip"}}), field, f"{field}: the default rule's {field} cannot be "
            f"changed: {DEFAULT_FIXED} ({', '.join(KATA_FIELDS)})")
        assert "kata.action" in body["allowed"]


def test_every_bad_rule_field_of_one_apply_is_named(api):
    body = refused(api("PUT", "/api/rules/sales", {
        "position": "first", "kata": {"action": "drop", "tag": "", "backup": "on"}}),
        "position", "position: must be an integer in 0..2147483646, got 'first'")
    assert [e["field"] for e in body["errors"]] == ["position", "kata.action", "kata.tag"]


@pytest.mark.parametrize(("path", "field", "message"), [
    ("/api/quarantine/messages/short/send-now", "message_id",
     "message_id: expected 8-64 letters and digits (as in 'queued as ...'), got 'short'"),
    ("/api/quarantine/messages/not_an_id_at_all/send-now", "message_id",
     "message_id: expected 8-64 letters and digits (as in 'queued as ...'), "
     "got 'not_an_id_at_all'"),
])
def test_a_malformed_message_id_is_refused_before_anything_is_looked_up(api, path, field,
                                                                        message):
    refused(api("POST", path, {}), field, message)
    refused(api("DELETE", path.removesuffix("/send-now"), {}), field, message)


def test_an_over_long_comment_is_refused(api):
    refused(api("POST", "/api/quarantine/messages/ABCDEFGH1234/send-now",
                {"comment": "x" * 1001}),
            "comment", "comment: at most 1000 characters, got 1001")


# --- CSRF, shapes and sizes --------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/api/settings"), ("POST", "/api/settings/defaults"), ("POST", "/api/kata/enable"),
    ("POST", "/api/kata/disable"), ("POST", "/api/rules"), ("PUT", "/api/rules/sales"),
    ("PUT", "/api/rules/sales/kata"), ("DELETE", "/api/rules/sales"),
    ("POST", "/api/quarantine/messages/ABCDEFGH1234/send-now"),
    ("DELETE", "/api/quarantine/messages/ABCDEFGH1234"), ("POST", "/api/tokens"),
    ("DELETE", "/api/tokens/x"), ("PUT", "/api/account/password"), ("POST", "/api/logout"),
])
def test_a_change_from_a_session_without_its_csrf_token_is_403(api, method, path):
    client = api.client
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}):
        answer = client.request(method, path, json={"central_node_port": 0}, headers=headers)
        assert answer.status_code == 403, (method, path, headers, answer.text)
        assert answer.json()["field"] == "X-CSRF-Token"


def test_reads_need_no_csrf_token(api):
    assert api.client.get("/api/session").status_code == 200


def test_an_api_token_needs_no_csrf_token(api):
    token = api("POST", "/api/tokens", {"name": "script", "scope": "admin"}).json()["token"]
    with TestClient(api.app, base_url="http://console.test") as script:  # no cookie
        answer = script.put("/api/settings", json={"central_node_port": 0},
                            headers={"Authorization": f"Bearer {token}"})
    refused(answer, "central_node_port",
            "central_node_port: must be an integer in 1..65535, got 0")


def test_a_body_that_is_not_json_is_400_and_not_an_object_is_422(api):
    client = api.client
    csrf = client.get("/api/session").json()["csrf_token"]
    answer = client.put("/api/settings", content=b"{port: 1", headers={
        "X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["field"] == "body"
    assert answer.json()["error"].startswith(
        "body: not valid JSON")
    listed = api("PUT", "/api/settings", [1, 2])
    assert listed.status_code == 422
    assert listed.json()["field"] == "body"
    nested = api("PUT", "/api/rules/sales", {"kata": "reject"})
    assert nested.status_code == 422
    assert nested.json()["field"] == "kata"


def test_an_oversized_body_is_413_whether_declared_or_streamed(api):
    client = api.client
    csrf = client.get("/api/session").json()["csrf_token"]
    big = b'{"name": "' + b"x" * 70_000 + b'"}'
    declared = client.put("/api/rules/sales", content=big, headers={
        "X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert declared.status_code == 413
    assert declared.json()["field"] == "body"

    def chunks():
        for _ in range(80):
            yield b" " * 1000

    streamed = client.put("/api/settings", content=chunks(), headers={
        "X-CSRF-Token": csrf, "Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_the_openapi_document_lists_the_api_and_no_cdn_docs_are_served(api):
    client = api.client
    spec = client.get("/api/openapi.json").json()
    assert {"/api/settings", "/api/settings/defaults", "/api/kata/{switch}",
            "/api/kata/connection", "/api/kata/pin", "/api/rules", "/api/rules/{rule_id}",
            "/api/rules/{rule_id}/kata", "/api/quarantine/messages",
            "/api/quarantine/messages/{message_id}/send-now",
            "/api/quarantine/messages/{message_id}", "/api/quarantine/usage",
            "/api/login"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 404

