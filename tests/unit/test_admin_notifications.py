"""The notification settings as a command and through the console's API: each value checked
against its range with a refusal naming the field, templates with unknown placeholders refused
naming them, and a change that changes nothing refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from katagate.admin.errors import InvalidCommand, NothingToChange
from katagate.admin.notifications import change_notifications, validate
from katagate.schemas import ControlState, evolve_control
from katagate.schemas.notifications import DEFAULT_TEMPLATES
from tests.console_client import console_client, sign_in

NOW = datetime(2026, 12, 3, 10, tzinfo=UTC)


def change(state: ControlState, **changes: object):
    return change_notifications(state, changes, actor="ann", now=NOW, event_id=uuid.uuid4())


def test_given_the_defaults_then_nobody_is_told_until_an_address_is_set():
    settings = ControlState().notifications
    assert (settings.admin_addresses, settings.rate_limit_per_hour, settings.digest_interval_s,
            settings.notify_detect, settings.notify_recipients_deleted) == ([], 20, 900, True,
                                                                             False)


def test_given_valid_changes_then_the_event_holds_the_whole_settings_after_them():
    event = change(ControlState(), admin_addresses="soc@example.net, it@example.net",
                   notify_recipients_deleted="on", rate_limit_per_hour="5")
    assert event.changed == ["admin_addresses", "notify_recipients_deleted",
                             "rate_limit_per_hour"]
    state = evolve_control(ControlState(), event)
    assert state.notifications.admin_addresses == ["soc@example.net", "it@example.net"]
    assert (state.notifications.rate_limit_per_hour, state.version) == (5, 1)


@pytest.mark.parametrize(("changes", "message"), [
    ({"rate_limit_per_hour": 1001}, "rate_limit_per_hour: must be an integer in 0..1000 "
                                    "notices per hour (0: digest only), got 1001"),
    ({"digest_interval_s": "59"}, "digest_interval_s: must be an integer in 60..86400 "
                                  "seconds, got 59"),
    ({"notify_detect": "maybe"}, "notify_detect: must be on or off, got 'maybe'"),
    ({"admin_addresses": "soc@example.net\r\nBcc: x@y.z"}, "admin_addresses: not a mail "
                                                           "address: 'Bcc:'"),
    ({"digest": 60}, "digest: unknown notification setting"),
    ({"template.detect.subject": "{sender_ip} sent {subjet}"},
     "template.detect.subject: unknown placeholders {sender_ip}, {subjet}"),
    ({"template.detect.subject": "a\nBcc: x@y.z"}, "template.detect.subject: must not "
                                                   "contain line breaks"),
    ({"template.digest.body": "{entries"}, "template.digest.body: not a valid template"),
    ({"template.nothing.body": "x"}, "template.nothing.body: unknown notification setting"),
])
def test_given_a_bad_value_then_refused_naming_the_setting(changes, message):
    with pytest.raises(InvalidCommand) as refused:
        validate(changes)
    assert str(refused.value).startswith(message)


def test_given_a_template_then_set_and_back_to_default():
    event = change(ControlState(), **{"template.detect.subject": "Threat: {subject}",
                                      "template.detect.body": "{message_id}\n{detects}"})
    state = evolve_control(ControlState(), event)
    assert state.notifications.template("detect").subject == "Threat: {subject}"
    assert state.notifications.template("late_detect") == DEFAULT_TEMPLATES["late_detect"]
    back = change(state, **{"template.detect.subject": "default",
                            "template.detect.body": "default"})
    assert back.settings.templates == {}


def test_given_a_change_that_changes_nothing_then_refused():
    with pytest.raises(NothingToChange, match="rate_limit_per_hour is already 20"):
        change(ControlState(), rate_limit_per_hour=20)


def test_given_the_api_then_a_bad_field_is_422_naming_it_before_kafka(tmp_path):
    with console_client(tmp_path) as (client, _console, _clock):
        csrf = sign_in(client)
        answer = client.put("/api/notifications", headers={"X-CSRF-Token": csrf},
                            json={"rate_limit_per_hour": -1,
                                  "template.detect.body": "{nope}"})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["field"] == "rate_limit_per_hour"
    assert body["allowed"] == "an integer in 0..1000 notices per hour (0: digest only)"
    assert [e["field"] for e in body["errors"]] == ["rate_limit_per_hour", "template.detect.body"]


def test_given_the_window_then_every_field_is_named_as_the_api_names_it():
    # Given settings changed from their defaults
    from katagate.admin.notifications import SETTING_NAMES
    from katagate.console.notifications_page import notifications_page

    state = evolve_control(ControlState(), change(ControlState(), admin_addresses="soc@x.example",
                                                  notify_skipped="off"))
    page = notifications_page(state)
    # Then the form shows them, each field named as PUT /api/notifications takes it
    shown = {f.name: f.value for f in (*page.fields, *page.templates)}
    assert set(shown) == set(SETTING_NAMES)
    assert (shown["admin_addresses"], shown["notify_skipped"], shown["notify_detect"]) == (
        "soc@x.example", "off", "on")
    assert shown["template.detect.subject"] == DEFAULT_TEMPLATES["detect"].subject



@pytest.mark.parametrize(("argv", "message"), [
    (["--rate-limit", "5000"], "rate_limit_per_hour: must be an integer in 0..1000"),
    (["--admins", "soc@example.net,bad"], "admin_addresses: not a mail address: 'bad'"),
    (["template.detect.body={sender_ip}"], "template.detect.body: unknown placeholder "
                                           "{sender_ip}"),
    (["digest=60"], "digest: unknown notification setting"),
])
def test_given_the_cli_then_a_bad_value_exits_2_naming_it_before_kafka(
        argv, message, monkeypatch, capsys):
    from katagate.cli import main

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # nothing listens there
    assert main(["notifications", "set", *argv]) == 2
    assert capsys.readouterr().err.startswith(f"katagate notifications set: {message}")
