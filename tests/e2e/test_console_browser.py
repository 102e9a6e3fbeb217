"""The web console in a real browser (headless Chromium, Selenium, Debian's chromedriver)
against a whole running gateway: ingest, scanner and decider on the real broker, the KATA
emulator and the demo sink as processes, the projector, and `katagate console run` as its own
process with its generated first password. Screenshots of each page go to tests/artifacts/."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.console_client import console_token_file, projector
from tests.e2e.browser import chromium, until
from tests.e2e.console_stack import (
    EICAR,
    ConsoleProcess,
    Stack,
    apply_rule,
    expected_refusal,
    mail,
    searched,
    select,
    send_detect,
)
from tests.e2e.gateway import Gateway, rule

pytestmark = pytest.mark.kafka

MIB = 1_048_576


@pytest.fixture(scope="module")
def stack(tmp_path_factory, kafka_bootstrap) -> Iterator[Stack]:
    from tests.conftest import ensure_namespace

    driver = chromium()  # first: without a browser there is nothing to start
    tmp = tmp_path_factory.mktemp("console-e2e")
    gateway = Gateway(ensure_namespace(kafka_bootstrap), tmp, rules=[
        rule("console", "delete", recipients=("console@example.net",), position=1)])
    try:
        with projector(gateway.kafka, tmp / "projector") as live:
            assert live.address is not None
            console = ConsoleProcess(gateway, tmp / "console",
                                     f"http://{live.address[0]}:{live.address[1]}",
                                     console_token_file(tmp / "projector"))
            try:
                stack = Stack(gateway, console, driver)
                stack.sign_in(console.password)
                until(lambda: stack.by_id("kata-settings"), 30, "the KATA Protection page")
                yield stack
            finally:
                console.stop()
    finally:
        driver.quit()
        gateway.close()


def test_signing_in_with_the_generated_password_and_refusing_a_wrong_one(stack):
    # The first start wrote the password to a private file and said where.
    assert any("initial-admin-password" in line for line in stack.console.said)
    assert (stack.console.state / "initial-admin-password").stat().st_mode & 0o077 == 0
    stack.by_id("sign-out").click()
    until(lambda: "/login" in stack.driver.current_url, what="the sign-in page")
    stack.open("/rules")  # no session: every page sends to the sign-in page
    until(lambda: stack.driver.current_url.endswith("/login?next=/rules"), what="a redirect")
    stack.type_into("login-password", "not the password")
    stack.by_id("login-submit").click()
    assert until(lambda: stack.text("login-error")) == "wrong user name or password"
    stack.shot("login")
    stack.type_into("login-password", stack.console.password)
    stack.by_id("login-submit").click()
    assert until(lambda: stack.text("signed-in-user"), what="the page asked for") == "admin"
    # The refusal is counted on the console's own metrics listener, not beside its pages.
    with urllib.request.urlopen(stack.console.metrics_url, timeout=10) as reply:  # noqa: S310
        assert 'katagate_console_sign_ins_total{outcome="refused"} 1.0' in reply.read().decode()
    with pytest.raises(urllib.error.HTTPError) as beside_pages:
        urllib.request.urlopen(stack.console.url + "/metrics", timeout=10)  # noqa: S310
    assert beside_pages.value.code == 404
    assert stack.driver.current_url == stack.console.url + "/rules"


def test_the_connection_window_shows_both_fingerprints_as_the_emulator_does(stack):
    (sensor,) = stack.gateway.emulator.sensors()
    stack.open("/settings/protection/kata")
    stack.shot("kata-protection")
    stack.by_id("open-connection-window").click()
    until(lambda: stack.text("conn-state").startswith("Connected"), 30, "Connected")
    # The address alone, as documented; the port on a line of its own
    assert stack.text("conn-address") == "127.0.0.1"
    assert stack.text("conn-port") == str(stack.gateway.emulator.port)
    assert "KSMG public key fingerprint" in stack.text("connection-rows")
    assert stack.text("conn-gateway-fingerprint") == sensor["fingerprint"]
    assert stack.text("conn-kata-fingerprint") == stack.gateway.emulator.fingerprint
    # The certificate's expiry, as recorded by the scanner: the emulator's is a year or more off.
    assert stack.text("conn-kata-not-after")[:4].isdigit()
    assert stack.by_id("conn-confirm").get_attribute("hidden") is not None  # nothing to confirm
    stack.shot("connection-state")
    stack.by_id("connection-close").click()


def test_switching_a_rules_action_changes_how_the_next_detected_message_is_handled(stack):
    from selenium.webdriver.support.select import Select

    stack.open("/rules")
    until(lambda: stack.by_id("rule-row-console"), what="the rule")
    stack.shot("rules")
    stack.driver.find_element("link text", "console").click()
    until(lambda: stack.by_id("kata-section"), what="the rule's KATA protection section")

    # Delete message → Reject: the next detected message is rejected with an NDR
    Select(stack.by_id("field-kata.action")).select_by_visible_text("Reject")
    version = apply_rule(stack)
    assert stack.last_control().rule.kata.action == "reject"
    assert Select(stack.by_id("field-kata.action")).first_selected_option.text == "Reject"
    stack.shot("rule-kata-protection")
    _m, events = send_detect(stack, "rejected by the console", version)
    decided = next(e for e in events if e.type == "action.decided")
    assert (decided.action, decided.reason) == ("reject", "detected")
    assert any(e.type == "ndr.sent" for e in events)

    # Reject → Skip, with a subject tag set in the "Tag for messages with a KATA detect" window
    Select(stack.by_id("field-kata.action")).select_by_visible_text("Skip")
    Select(stack.by_id("field-kata.on_unavailable")).select_by_value("tempfail")
    stack.by_id("open-tag-window").click()
    stack.type_into("tag-input", "[console detect]")
    stack.shot("tag-window")
    stack.by_id("tag-ok").click()
    assert stack.text("open-tag-window") == "[console detect]"
    stack.by_id("field-kata.backup").click()  # Place copy in Backup: off
    version = apply_rule(stack)
    assert stack.last_control().rule.kata.model_dump() == {
        "enabled": True, "action": "skip", "tag": "[console detect]", "backup": False,
        "on_unavailable": "tempfail"}
    _m, events = send_detect(stack, "skipped by the console", version)
    assert next(e for e in events if e.type == "delivery.delivered").tagged
    assert "backup.stored" not in [e.type for e in events]
    (stored,) = [s for s in stack.gateway.sink.messages() if b"skipped by the console" in s.data]
    assert b"Subject: [console detect] skipped by the console" in stored.data

    # The rule's KATA protection switch off: the next message is not scanned at all
    stack.by_id("field-kata.enabled").find_element("xpath", "..").click()
    version = apply_rule(stack)
    assert stack.last_control().type == "rule.kata_toggled"
    _m, events = send_detect(stack, "not scanned", version)
    decided = next(e for e in events if e.type == "action.decided")
    assert (decided.skipped, decided.reason) == (True, "rule_kata_disabled")


def test_the_kata_quarantine_shows_each_sender_and_acts_on_a_selection(stack):
    gateway = stack.gateway
    gateway.emulator.cli("faults", "set", "--latency", "60")
    try:
        senders = ("anna@partner.example.org", "ben@partner.example.org",
                   "carl@other.example.org")
        ids = [gateway.send(mail(f"waiting {n}", b"hello", "bob@example.net"), sender=sender)
               for n, sender in enumerate(senders)]
        stack.open("/queue/kata-quarantine")
        until(lambda: all(stack.by_id(f"waiting-{m}") for m in ids), 30,
              "the three messages listed as waiting")
        # Each row names its sender, recipients and subject, and the time left
        for message_id, sender in zip(ids, senders, strict=True):
            row = stack.by_id(f"waiting-{message_id}")
            assert row.find_element("css selector", "td.sender").text == sender
            assert "bob@example.net" in row.text
            assert row.find_element("css selector", "td.time-left").text.endswith(" s")
        until(lambda: stack.text("usage-messages").startswith("3 of 5000"), 20,
              "the usage bar to count all three")
        # The search form narrows the list: one sender's domain
        stack.type_into("filter-from", "*@partner.example.org")
        stack.by_id("search-submit").click()
        until(lambda: not stack.driver.find_elements("id", f"waiting-{ids[2]}"), 20,
              "the other domain's message filtered out")
        stack.shot("kata-quarantine")

        # When both listed are selected and sent on (Send now) at once
        select(stack, ids[0])
        select(stack, ids[1])
        assert stack.text("selection-count") == "2 selected"
        stack.by_id("selection-send-now").click()
        # Then each is delivered, forced by the administrator
        for message_id in ids[:2]:
            sent = gateway.wait_terminal(message_id, 30)
            assert "delivery.delivered" in [e.type for e in sent]
            forced = next(e for e in sent if e.type == "quarantine.forced_release")
            assert forced.actor == "admin"

        # And Delete on the third: discarded
        stack.type_into("filter-from", "")
        stack.by_id("search-submit").click()
        until(lambda: stack.by_id(f"waiting-{ids[2]}"), 20, "the third listed again")
        select(stack, ids[2])
        stack.by_id("selection-delete").click()
        deleted = gateway.wait_terminal(ids[2], 30)
        assert "message.discarded" in [e.type for e in deleted]
        assert next(e for e in deleted if e.type == "quarantine.forced_delete").actor == "admin"
        until(lambda: not stack.by_id("waiting-empty").get_attribute("hidden"), 20,
              "the list to empty")
        until(lambda: stack.text("usage-messages").startswith("0 of 5000"), 20, "usage 0")
    finally:
        gateway.emulator.cli("faults", "reset")


def test_tracking_finds_a_message_by_its_sender_and_opens_its_timeline(stack):
    sender = "dora@tracked.example.org"
    message_id = stack.gateway.send(mail("quarterly figures", b"numbers", "bob@example.net"),
                                    sender=sender)
    events = stack.gateway.wait_terminal(message_id)
    stack.open("/tracking")
    stack.type_into("filter-from", sender)
    row = searched(stack, f"result-{message_id}", "Delivered")
    assert [r.get_attribute("id") for r in stack.driver.find_elements(
        "css selector", "#results tr")] == [f"result-{message_id}"]  # that sender's only
    for shown in (sender, "bob@example.net", "quarterly figures", "Not detected",
                  "Delivered"):
        assert shown in row
    stack.shot("tracking")
    stack.by_id(f"result-{message_id}").click()
    until(lambda: stack.text("timeline-id") == message_id, 20, "the message's timeline")
    types = [r.get_attribute("data-type") for r in stack.driver.find_elements(
        "css selector", "#timeline tr.event")]
    # Every event of the message, each with its time and the stage that wrote it
    assert set(types) >= {e.type for e in events}
    assert "ingest/ingest-0" in stack.text("timeline")
    stack.shot("tracking-timeline")


def test_a_backup_copy_is_found_by_its_sender_and_resent_to_an_address(stack):
    # Given an EICAR message deleted by the default rule (Place copy in Backup: on)
    sender = "eve@suspect.example.org"
    message_id = stack.gateway.send(mail("invoice attached", EICAR, "bob@example.net"),
                                    sender=sender)
    events = stack.gateway.wait_terminal(message_id)
    assert "message.discarded" in [e.type for e in events]
    # When the administrator looks for it in the Backup by its sender
    stack.open("/backup")
    stack.type_into("filter-from", sender)
    searched(stack, f"copy-{message_id}", "Held")
    until(lambda: "days at most" in stack.text("backup-copies"), 20, "the Backup's usage")
    stack.shot("backup")
    stack.by_id(f"copy-{message_id}").click()
    until(lambda: stack.text("copy-id") == message_id, 20, "the copy's page")
    # Then its headers and its text are shown, as text
    assert "invoice attached" in stack.text("copy-headers")
    assert "EICAR-STANDARD-ANTIVIRUS-TEST-FILE" in stack.text("copy-text")
    stack.shot("backup-copy")
    # When it is resent to an address the administrator gives
    stack.by_id("resend-given").click()
    stack.type_into("resend-addresses", "helpdesk@example.net")
    assert "resent to helpdesk@example.net" in stack.click_and_reload(
        stack.by_id("resend-submit"))
    # Then it arrives at the next hop for that address, marked as released from Backup
    arrived = until(lambda: [m for m in stack.gateway.sink.messages()
                             if m.recipients == ["helpdesk@example.net"]], 60,
                    "the resent copy at the sink")
    assert EICAR in arrived[0].data
    assert b"X-Katagate-Released-From-Backup: " + message_id.encode() in arrived[0].data
    requested = next(e for e in stack.gateway.mail_events(message_id)
                     if e.type == "backup.resend_requested")
    assert (requested.actor, requested.recipients) == ("admin", ["helpdesk@example.net"])


BAD_VALUES = [
    ("central_node_address", "300.1.2.3"), ("central_node_address", "kata.example.com"),
    ("central_node_port", "0"), ("central_node_port", "65536"),
    ("response_timeout_s", "59"), ("response_timeout_s", "86401"),
    ("quarantine_max_size_mb", "0"), ("quarantine_max_messages", "0"),
    ("quarantine_max_messages", "4294967297"), ("poll_interval_s", "3601"),
]


def test_each_bad_value_shows_its_validation_message_and_changes_nothing(stack):
    stack.open("/settings/protection/kata")
    before = len(stack.gateway.control_events())
    stack.by_id("show-central_node_port").click()
    initial = {field: stack.by_id(f"field-{field}").get_attribute("value")
               for field, _ in BAD_VALUES}
    previous = None
    for field, bad in BAD_VALUES:  # one bad value at a time, the others as they were
        if previous is not None and previous != field:
            stack.type_into(f"field-{previous}", initial[previous])
        stack.type_into(f"field-{field}", bad)
        previous = field
        stack.by_id("kata-apply").click()
        message = expected_refusal(field, bad)
        until(lambda field=field, message=message: stack.text(f"error-{field}") == message,
              10, f"the message for {field}={bad}")
    for field, bad in BAD_VALUES[::2]:  # several at once: each beside its own field
        stack.type_into(f"field-{field}", bad)
    stack.by_id("kata-apply").click()
    until(lambda: all(stack.text(f"error-{f}") for f, _ in BAD_VALUES[::2]), 10,
          "every message at once")
    stack.shot("kata-protection-window-errors")
    stack.by_id("kata-cancel").click()
    assert len(stack.gateway.control_events()) == before


def test_changing_each_setting_then_set_default_values(stack):
    from selenium.webdriver.support.select import Select

    # Last: the gateway is pointed elsewhere on this machine (127.0.0.2: loopback only).
    stack.open("/settings/protection/kata")
    stack.by_id("show-response_timeout_s").click()
    new = {"central_node_address": "127.0.0.2", "central_node_port": "8443",
           "response_timeout_s": "900", "quarantine_max_size_mb": "2048",
           "quarantine_max_messages": "100", "poll_interval_s": "5"}
    for name, value in new.items():
        stack.type_into(f"field-{name}", value)
    stack.by_id("field-ndr_enabled").click()
    Select(stack.by_id("field-hold_outcome")).select_by_value("reject")  # a Policy field
    stack.shot("kata-protection-window")
    assert "applied" in stack.click_and_reload(stack.by_id("kata-apply"))
    changed = stack.last_control()
    assert (changed.type, changed.actor) == ("settings.kata_changed", "admin")
    assert changed.changed == ["central_node_address", "central_node_port",
                               "response_timeout_s", "quarantine_max_bytes",
                               "quarantine_max_messages", "ndr_enabled", "poll_interval_s",
                               "hold_outcome"]
    shown = {name: stack.text(f"show-{name}") for name in new}
    assert shown == {"central_node_address": "127.0.0.2", "central_node_port": "8443",
                     "response_timeout_s": "900 s", "quarantine_max_size_mb": "2048 MB",
                     "quarantine_max_messages": "100", "poll_interval_s": "5 s"}
    assert stack.text("show-ndr_enabled") == "Off"
    until(lambda: stack.text("usage-messages").endswith("of 100 (0%)"), 20,
          "the usage bar against the new limit")
    stack.shot("kata-protection-applied")

    # "Set default values" fills in port, timeout and both quarantine limits; Cancel discards
    def fill_defaults() -> None:
        stack.by_id("show-central_node_port").click()
        stack.by_id("set-default-values").click()
        assert stack.by_id("field-central_node_port").get_attribute("value") == "443"
        assert stack.by_id("field-quarantine_max_size_mb").get_attribute("value") == "1024"
    before = len(stack.gateway.control_events())
    fill_defaults()
    stack.by_id("kata-cancel").click()
    assert stack.text("show-central_node_port") == "8443"  # the settings in force
    stack.by_id("show-central_node_port").click()  # opened again: as in force, not filled
    assert stack.by_id("field-central_node_port").get_attribute("value") == "8443"
    stack.by_id("kata-cancel").click()
    assert len(stack.gateway.control_events()) == before
    # Apply saves them: port, timeout and both quarantine limits; nothing else
    fill_defaults()
    stack.shot("kata-protection-window-defaults")
    assert "applied" in stack.click_and_reload(stack.by_id("kata-apply"))
    assert stack.last_control().changed == ["central_node_port", "response_timeout_s",
                                            "quarantine_max_bytes", "quarantine_max_messages"]
    assert {name: stack.text(f"show-{name}") for name in new} == {
        "central_node_address": "127.0.0.2", "central_node_port": "443",
        "response_timeout_s": "600 s", "quarantine_max_size_mb": "1024 MB",
        "quarantine_max_messages": "5000", "poll_interval_s": "5 s"}
    assert stack.text("show-ndr_enabled") == "Off"
    stack.shot("kata-protection-defaults")
    # With the defaults in force: filled in and applied, the window closes without an error
    before = len(stack.gateway.control_events())
    fill_defaults()
    stack.by_id("kata-apply").click()
    until(lambda: not stack.by_id("kata-window").is_displayed(), 10, "the window to close")
    assert stack.text("flash").startswith("Nothing to change")
    assert len(stack.gateway.control_events()) == before

    # The global KATA protection switch
    switch = stack.by_id("kata-protection-switch").find_element("xpath", "..")
    assert "KATA protection disabled" in stack.click_and_reload(switch)
    assert stack.last_control().enabled is False
    assert stack.text("kata-protection-state").startswith("KATA protection is off")


def test_the_default_rules_page_edits_its_kata_section_and_nothing_else(stack):
    from selenium.webdriver.support.select import Select

    # Given the built-in default rule's page
    stack.open("/rules/default")
    until(lambda: stack.by_id("kata-section"), what="the default rule's KATA section")
    # Then its general fields are read-only and it has no Delete
    assert not stack.by_id("field-name").is_enabled()
    assert not stack.by_id("field-position").is_enabled()
    assert stack.driver.find_elements("id", "rule-delete") == []
    stack.shot("default-rule")
    # When its action is set to Reject and applied, then rule.changed of "default" holds it
    Select(stack.by_id("field-kata.action")).select_by_visible_text("Reject")
    apply_rule(stack)
    event = stack.last_control()
    assert (event.type, event.rule.rule_id, event.rule.kata.action) == (
        "rule.changed", "default", "reject")
    assert Select(stack.by_id("field-kata.action")).first_selected_option.text == "Reject"
    # And back to the product's default, for the module's other tests
    Select(stack.by_id("field-kata.action")).select_by_visible_text("Delete message")
    apply_rule(stack)
