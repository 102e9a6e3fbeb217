"""Given the real broker, the console's HTTP API writes one control event per accepted change,
with the signed-in administrator (or the API token) as its actor, and nothing for a refused
one; a fold of katagate.control from offset 0 reproduces the settings and rules it shows. The
connection window and the quarantine come from a live projector."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

import pytest

from katagate.admin.control_writer import ControlSession
from katagate.admin.settings import change_settings
from katagate.console.documents import rules_document, settings_document
from katagate.eventlog.topics import TopicNames
from katagate.schemas import CentralNodeObserved, ConnectionStateChanged, NodeAddress, ProducerRef
from tests.console_client import console_client, console_token_file, projector, sign_in
from tests.integration.kafka_read import control_events, refold
from tests.integration.kata_harness import publish, wait_for

pytestmark = pytest.mark.kafka
MIB = 1_048_576


@pytest.fixture
def admin(kafka_settings, tmp_path):
    """A signed-in client on this test's namespace: `admin(method, path, json)`."""
    with console_client(tmp_path / "console", kafka_settings) as (client, console, clock):
        csrf = sign_in(client)

        def call(method: str, path: str, body: Any = None) -> Any:
            return client.request(method, path, json=body, headers={"X-CSRF-Token": csrf})

        call.client = client  # type: ignore[attr-defined]
        call.console = console  # type: ignore[attr-defined]
        call.clock = clock  # type: ignore[attr-defined]
        yield call


def written(answer: Any, status: int = 200) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    (event,) = answer.json()["events"]
    assert event["actor"] == "admin"
    document: dict[str, Any] = event
    return document


def test_settings_changes_are_events_by_the_admin_and_a_replay_reproduces_what_is_shown(
        admin, kafka_settings):
    # Given an empty control topic and a signed-in administrator
    assert admin("GET", "/api/settings").json()["version"] == 0

    # When they apply settings, set default values and switch KATA protection on
    first = written(admin("PUT", "/api/settings", {"central_node_address": "192.0.2.10",
                                                   "central_node_port": "8443"}))
    second = written(admin("PUT", "/api/settings", {
        "response_timeout_s": 900, "quarantine_max_size_mb": 2048,
        "quarantine_max_messages": 100, "ndr_enabled": False, "poll_interval_s": 30}))
    reset = written(admin("POST", "/api/settings/defaults"))
    switched = written(admin("POST", "/api/kata/enable"))

    # Then each is one control event with its changed fields, in order, versions 1..4
    assert [(e["type"], e["version"]) for e in (first, second, reset, switched)] == [
        ("settings.kata_changed", 1), ("settings.kata_changed", 2),
        ("settings.kata_reset", 3), ("settings.kata_toggled", 4)]
    assert first["changed"] == ["central_node_address", "central_node_port"]
    assert second["changed"] == ["response_timeout_s", "quarantine_max_bytes",
                                 "quarantine_max_messages", "ndr_enabled", "poll_interval_s"]
    events = control_events(kafka_settings)
    assert [str(e.event_id) for e in events] == [
        e["event_id"] for e in (first, second, reset, switched)]
    assert {(getattr(e, "actor", None), e.producer.instance) for e in events} == {
        ("admin", "admin")}

    # And the defaults reset exactly the port, the timeout and both quarantine limits
    shown = admin("GET", "/api/settings").json()
    assert shown == {"version": 4, "kata_protection": True, "settings": {
        "central_node_address": "192.0.2.10", "central_node_port": 443,
        "response_timeout_s": 600, "quarantine_max_bytes": 1024 * MIB,
        "quarantine_max_messages": 5000, "ndr_enabled": False, "poll_interval_s": 30,
        "backup_max_age_days": 30, "backup_max_bytes": 10240 * MIB,
        "on_unavailable": "skip", "hold_outcome": "skip", "verdict_header_name": None,
        "verdict_header_format": "{verdict}; scanned={scanned_at}", "verdict_cache_ttl_s": 3600}}
    # And a fold from offset 0 reproduces what the API shows
    assert settings_document(refold(kafka_settings)) == shown

    # And the page shows the same values under the product's labels
    page = admin.client.get("/settings/protection/kata").text
    for text in ("KATA Central Node IPv4-address", "192.0.2.10", "KATA response timeout",
                 "Maximum number of messages in KATA Quarantine", "Set default values",
                 "KATA connection state", "KSMG public key fingerprint"):
        assert text in page


def test_refused_changes_write_nothing_and_say_why(admin, kafka_settings):
    written(admin("PUT", "/api/settings", {"central_node_port": 8443}))
    before = len(control_events(kafka_settings))
    same = admin("PUT", "/api/settings", {"central_node_port": "8443"})
    assert same.status_code == 409
    assert same.json()["error"] == "nothing to change: central_node_port is already 8443"
    assert admin("POST", "/api/kata/disable").status_code == 409
    bad = admin("PUT", "/api/settings", {"central_node_port": 0, "response_timeout_s": 30})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["central_node_port",
                                                          "response_timeout_s"]
    written(admin("POST", "/api/settings/defaults"))
    assert admin("POST", "/api/settings/defaults").json()["error"].startswith(
        "nothing to change: the defaults are already in force")
    assert len(control_events(kafka_settings)) == before + 1


def test_rules_and_their_kata_section_are_events_and_a_replay_reproduces_the_list(
        admin, kafka_settings):
    created = written(admin("POST", "/api/rules", {
        "rule_id": "sales", "recipients": ["*@sales.example.net"],
        "kata": {"action": "reject"}}), 201)
    assert created["type"] == "rule.created"
    assert created["rule"]["kata"] == {"enabled": True, "action": "reject",
                                       "tag": "[KATA detect]", "backup": True,
                                       "on_unavailable": None}
    written(admin("POST", "/api/rules", {"rule_id": "all", "position": 100}), 201)
    changed = written(admin("PUT", "/api/rules/sales", {"position": 20,
                                                        "name": "Sales <script>x</script>",
                                                        "kata": {"tag": None}}))
    assert changed["type"] == "rule.changed"
    assert changed["rule"]["kata"]["tag"] is None
    toggled = written(admin("PUT", "/api/rules/sales/kata", {"enabled": False}))
    assert (toggled["type"], toggled["enabled"]) == ("rule.kata_toggled", False)
    section = written(admin("PUT", "/api/rules/sales/kata", {"action": "skip",
                                                             "backup": "off",
                                                             "on_unavailable": "hold"}))
    assert section["type"] == "rule.changed"
    assert section["rule"]["kata"] == {"enabled": False, "action": "skip", "tag": None,
                                       "backup": False, "on_unavailable": "hold"}
    # The rule form's "As in the settings": the global setting again
    back = written(admin("PUT", "/api/rules/sales/kata", {"on_unavailable": "global"}))
    assert back["rule"]["kata"]["on_unavailable"] is None

    # Refusals that need the rules in force: nothing written
    before = len(control_events(kafka_settings))
    duplicate = admin("POST", "/api/rules", {"rule_id": "sales"})
    assert duplicate.status_code == 422
    assert duplicate.json()["field"] == "rule_id"
    taken = admin("PUT", "/api/rules/all", {"position": 20})
    assert taken.status_code == 422
    assert taken.json()["error"].startswith(
        "position: 20 is taken by rule 'sales'")
    for method, path, body in [("GET", "/api/rules/nope", None),
                               ("PUT", "/api/rules/nope", {"name": "x"}),
                               ("PUT", "/api/rules/nope/kata", {"enabled": True}),
                               ("DELETE", "/api/rules/nope", None)]:
        missing = admin(method, path, body)
        assert missing.status_code == 404, (method, path, missing.text)
        assert missing.json() == {"error": "rule_id: no rule 'nope' (rules: all, sales)",
                                  "field": "rule_id", "allowed": ["all", "sales"]}
    assert admin("PUT", "/api/rules/sales/kata", {"enabled": False}).status_code == 409
    assert len(control_events(kafka_settings)) == before

    deleted = written(admin("DELETE", "/api/rules/all"))
    assert (deleted["type"], deleted["rule_id"]) == ("rule.deleted", "all")
    shown = admin("GET", "/api/rules").json()
    assert [r["rule_id"] for r in shown["rules"]] == ["sales"]
    assert shown["default_rule"]["rule_id"] == "default"
    assert rules_document(refold(kafka_settings)) == shown
    assert admin("GET", "/api/rules/sales").json() == shown["rules"][0]
    page = admin.client.get("/rules/sales").text
    assert "Sales &lt;script&gt;x&lt;/script&gt;" in page  # text, never markup
    assert "<script>x" not in page
    assert "If KATA detected an event" in page
    assert "Place copy in Backup" in page
    assert '<option value="skip" selected>Skip</option>' in page


def test_the_default_rules_kata_section_is_edited_and_its_page_offers_that_only(
        admin, kafka_settings):
    # When the administrator sets the built-in default rule's action and Backup
    section = written(admin("PUT", "/api/rules/default/kata", {"action": "reject",
                                                               "backup": False}))
    # Then one rule.changed for "default", and the rule shown is the one folded from the log
    assert (section["type"], section["rule"]["rule_id"]) == ("rule.changed", "default")
    shown = admin("GET", "/api/rules").json()
    assert shown["default_rule"]["kata"]["action"] == "reject"
    assert rules_document(refold(kafka_settings)) == shown
    assert admin("GET", "/api/rules/default").json() == shown["default_rule"]
    toggled = written(admin("PUT", "/api/rules/default/kata", {"enabled": False}))
    assert (toggled["type"], toggled["rule_id"]) == ("rule.kata_toggled", "default")
    # And its page shows the general fields read-only, the KATA section as a form, no Delete
    page = admin.client.get("/rules/default").text
    assert '<fieldset id="general-fields" disabled>' in page
    assert '<fieldset id="kata-fields">' in page
    assert 'id="rule-apply"' in page
    assert 'id="rule-delete"' not in page
    assert '<option value="reject" selected>Reject</option>' in page


def test_an_api_token_writes_as_the_admin_through_that_token(admin, kafka_settings):
    token = admin("POST", "/api/tokens", {"name": "ci", "scope": "admin"}).json()["token"]
    client = admin.client
    client.cookies.clear()
    answer = client.post("/api/kata/enable", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    (event,) = control_events(kafka_settings)
    assert (event.type, getattr(event, "actor", None), event.producer.instance) == (
        "settings.kata_toggled", "admin (token ci)", "admin_(token_ci)")


def test_no_session_no_csrf_token_and_too_many_failures_are_refused_and_write_nothing(
        admin, kafka_settings):
    client = admin.client
    assert client.post("/api/kata/enable").status_code == 403  # the session, no CSRF token
    assert client.put("/api/settings", json={"central_node_port": 8443},
                      headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert client.post("/api/rules", json={"rule_id": "x"}).status_code == 403
    client.cookies.clear()
    assert client.post("/api/kata/enable").status_code == 401
    assert client.get("/api/settings").status_code == 401
    for _ in range(5):
        assert client.post("/api/login", json={"name": "admin", "password": "x" * 9}
                           ).status_code == 401
    limited = client.post("/api/login", json={"name": "admin", "password": "x" * 9})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert control_events(kafka_settings) == []


def test_a_change_by_another_administrator_is_shown_without_a_restart(admin, kafka_settings):
    # Given the console has shown the settings once (its fold is running)
    assert admin("GET", "/api/settings").json()["version"] == 0
    # When another administrator changes them (the CLI's write path)
    with ControlSession(kafka_settings) as session:
        session.append([change_settings(session.state, {"response_timeout_s": 1200},
                                        actor="bob", now=datetime.now(UTC),
                                        event_id=uuid.uuid4())])
    # Then the console shows it
    shown = wait_for(lambda: admin("GET", "/api/settings").json()["version"] == 1, 10,
                     "the console to fold bob's change")
    assert shown
    assert admin("GET", "/api/settings").json()["settings"]["response_timeout_s"] == 1200


def test_connection_state_and_quarantine_come_from_the_projector(kafka_settings, tmp_path):
    with projector(kafka_settings, tmp_path / "projector") as live:
        assert live.address is not None
        url = f"http://{live.address[0]}:{live.address[1]}"
        token = console_token_file(tmp_path / "projector")
        # Without the projector's read token the console cannot show its views, and says why.
        with console_client(tmp_path / "console", kafka_settings, projector_url=url) as (
                client, _console, _clock):
            sign_in(client)
            refused = client.get("/api/kata/connection")
            assert refused.status_code == 502
            assert "projector_token_file" in refused.json()["error"]
        with console_client(tmp_path / "console", kafka_settings, projector_url=url,
                            projector_token_file=token) as (client, _console, _clock):
            csrf = sign_in(client)
            headers = {"X-CSRF-Token": csrf}
            client.put("/api/settings", headers=headers, json={
                "central_node_address": "192.0.2.10", "quarantine_max_messages": 7})

            def window() -> dict[str, Any]:
                document: dict[str, Any] = client.get("/api/kata/connection").json()
                return document

            shown = wait_for(lambda: window()["central_node_address"] == "192.0.2.10" and
                             window(), 30, "the projector to fold the address")
            assert shown["connection_state"] == "not_configured"
            assert {"ksmg_public_key_fingerprint", "kata_public_key_fingerprint"} <= set(shown)
            # When the scanner, under require_manual_pin, saw KATA's key (and its certificate's
            # expiry) and left the pin to an administrator
            node = NodeAddress(address=IPv4Address("192.0.2.10"), port=443)
            key = ":".join(["AB"] * 32)
            scanner = ProducerRef(stage="scanner", instance="scanner-0")
            publish(kafka_settings, TopicNames(kafka_settings.topic_prefix).control, [
                CentralNodeObserved(
                    event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), producer=scanner,
                    central_node=node, fingerprint=key, pinned=False,
                    certificate_not_after=datetime(2027, 1, 31, tzinfo=UTC)),
                ConnectionStateChanged(
                    event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), producer=scanner,
                    state="connecting", previous="not_configured", central_node=node,
                    detail="require_manual_pin is on", pin_required=True)])
            # Then the console's state window names the key to confirm, and the expiry
            shown = wait_for(lambda: window()["connection_state"] == "connecting" and window(),
                             30, "the projector to fold the scanner's events")
            assert shown["kata_public_key_confirmation_required"] == key
            assert shown["kata_certificate_not_after"] == "2027-01-31T00:00:00.000000Z"
            usage = client.get("/api/quarantine/usage").json()
            assert (usage["messages_in_use"], usage["limit_messages"]) == (0, 7)
            assert client.get("/api/quarantine/messages").json() == {"messages": [],
                                                                     "next": None}
            bad = client.get("/api/quarantine/messages?limit=5000")
            assert bad.status_code == 400
            assert bad.json()["field"] == "limit"
            waiting = client.post("/api/quarantine/messages/ABCDEFGH1234/send-now",
                                  headers=headers, json={})
            assert waiting.status_code == 404
            assert waiting.json()["error"].startswith(
                "message_id: ABCDEFGH1234 is not waiting in the KATA Quarantine")
    # The projector has stopped: the console says so rather than guessing.
    with console_client(tmp_path / "console", kafka_settings, projector_url=url,
                        projector_token_file=token) as (client, _console, _clock):
        sign_in(client)
        gone = client.get("/api/kata/connection")
        assert gone.status_code == 502
        assert "projector" in gone.json()["error"]


def test_simultaneous_applies_from_one_console_each_get_their_own_version(admin,
                                                                           kafka_settings):
    from concurrent.futures import ThreadPoolExecutor

    ports = [8441, 8442, 8443, 8444]
    with ThreadPoolExecutor(len(ports)) as pool:
        answers = list(pool.map(
            lambda port: admin("PUT", "/api/settings", {"central_node_port": port}), ports))
    assert [a.status_code for a in answers] == [200] * len(ports)
    versions = sorted(a.json()["version"] for a in answers)
    assert versions == [1, 2, 3, 4]
    assert [e.version for e in control_events(kafka_settings)] == versions


def test_an_administrator_confirms_the_central_nodes_key_in_the_console(admin, kafka_settings):
    key = ":".join(["CD"] * 32)
    # Given no Central Node address: a pin is refused naming the setting, nothing written
    refused = admin("POST", "/api/kata/pin", {"fingerprint": key})
    assert refused.status_code == 422
    assert refused.json()["field"] == "central_node_address"
    assert control_events(kafka_settings) == []
    written(admin("PUT", "/api/settings", {"central_node_address": "192.0.2.10",
                                          "central_node_port": 8443}))
    # A fingerprint that is not 32 hex bytes is refused naming the field
    bad = admin("POST", "/api/kata/pin", {"fingerprint": "zz"})
    assert bad.status_code == 422
    assert bad.json()["field"] == "fingerprint"
    assert len(control_events(kafka_settings)) == 1
    # When the administrator confirms the key as KATA shows it (lower case, no colons)
    pinned = admin("POST", "/api/kata/pin", {"fingerprint": key.replace(":", "").lower()})
    assert pinned.status_code == 200, pinned.text
    assert pinned.json() == {"pinned": key, "central_node": "192.0.2.10:8443"}
    # Then the pin is a control event for that node, by the signed-in administrator
    event = control_events(kafka_settings)[-1]
    assert isinstance(event, CentralNodeObserved)
    assert (event.pinned, event.fingerprint, event.central_node.port) == (True, key, 8443)
    assert (event.producer.stage, event.producer.instance) == ("admin", "admin")
