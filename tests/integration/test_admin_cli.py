"""Given the real broker, the admin CLI writes one control event per accepted command, writes
nothing for a refused one (exit 2, the field named on stderr), and what `settings show --json`
and `rules list --json` print is what a fold of katagate.control from offset 0 gives."""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from katagate.admin.control_writer import ConcurrentChange, ControlSession
from katagate.admin.settings import change_settings
from katagate.cli import main
from katagate.eventlog.broker import free_port
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    DEFAULT_RULE,
    ForcedRelease,
    KataProtectionToggled,
    KataSettingsChanged,
    KataSettingsReset,
    QuarantineAdmitted,
    RuleChanged,
    RuleCreated,
    RuleDeleted,
    RuleKataToggled,
    decode_event,
)
from tests.integration.kafka_read import control_events, read_all, refold
from tests.unit.fixtures.events import sample_events

pytestmark = pytest.mark.kafka
MIB = 1_048_576
# Who the CLI records as acting: the operating-system user running it, whatever --actor says.
ME = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        kafka_settings: KafkaSettings):
    """`katagate ARGS` in-process against this test's namespace: (exit code, stdout, stderr)."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", kafka_settings.topic_prefix)

    def run_cli(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run_cli


def shown(run: Any, *argv: str) -> dict[str, Any]:
    code, out, err = run(*argv, "--json")
    assert (code, err) == (0, "")
    document: dict[str, Any] = json.loads(out)
    return document


def test_settings_changes_are_events_and_a_replay_reproduces_what_show_prints(
        run, kafka_settings):
    # Given an empty control topic
    assert shown(run, "settings", "show")["version"] == 0
    # When an administrator applies the KATA Protection window
    code, out, err = run("settings", "set", "--central-node-address", "192.0.2.10",
                         "--port", "8443", "--response-timeout", "900",
                         "--quarantine-max-size-mb", "10", "--quarantine-max-messages", "20",
                         "--ndr", "off", "--actor", "alice")
    # Then one KataSettingsChanged is written with version 1, recording the OS user who ran the
    # command as its actor and what --actor said only as a note beside it
    assert (code, err) == (0, "")
    assert "KATA Central Node port: 443 -> 8443" in out
    [event] = control_events(kafka_settings)
    assert isinstance(event, KataSettingsChanged)
    assert (event.actor, event.actor_note, event.version) == (ME, "alice", 1)
    assert event.producer.instance == ME
    assert event.changed == ["central_node_address", "central_node_port", "response_timeout_s",
                             "quarantine_max_bytes", "quarantine_max_messages", "ndr_enabled"]
    assert event.settings.quarantine_max_bytes == 10 * MIB
    # When she changes one setting by name and clicks "Set default values"
    assert run("settings", "set", "poll_interval_s=30", "--actor", "alice")[0] == 0
    code, out, _ = run("settings", "defaults", "--actor", "bob", "--json")
    assert code == 0
    assert json.loads(out)["version"] == 3
    # Then the reset put back the four documented fields and left the others
    reset = control_events(kafka_settings)[-1]
    assert isinstance(reset, KataSettingsReset)
    assert (reset.actor, reset.actor_note) == (ME, "bob")
    after = shown(run, "settings", "show")["settings"]
    assert (after["central_node_port"], after["response_timeout_s"],
            after["quarantine_max_bytes"], after["quarantine_max_messages"]) == (
        443, 600, 1024 * MIB, 5000)
    assert (after["central_node_address"], after["ndr_enabled"], after["poll_interval_s"]) == (
        "192.0.2.10", False, 30)
    # And a fold of the topic from offset 0 gives exactly what `settings show --json` prints
    state = refold(kafka_settings)
    assert shown(run, "settings", "show") == {
        "version": state.version, "kata_protection": state.protection_enabled,
        "settings": state.settings.model_dump(mode="json"),
    }
    # And the human view shows the product's names and units
    code, out, _ = run("settings", "show")
    assert "KATA Quarantine maximum size:" in out
    assert "1024 MB" in out


def test_the_global_kata_switch(run, kafka_settings):
    code, out, err = run("kata", "enable", "--actor", "carol")
    assert (code, err) == (0, "")
    assert "KATA protection enabled" in out
    assert "no KATA Central Node address is set" in out
    code, _, err = run("kata", "enable")
    assert code == 2
    assert "kata_protection: nothing to change, already enabled" in err
    assert run("kata", "disable", "--actor", "carol")[0] == 0
    events = control_events(kafka_settings)
    assert [(type(e), e.enabled, e.version, e.actor, e.actor_note) for e in events
            if isinstance(e, KataProtectionToggled)] == [
        (KataProtectionToggled, True, 1, ME, "carol"),
        (KataProtectionToggled, False, 2, ME, "carol")]
    assert shown(run, "settings", "show")["kata_protection"] is False


def test_rules_lifecycle_and_a_replay_reproduces_what_list_prints(run, kafka_settings):
    # When rules are added, changed, switched and deleted
    steps = [
        ("rules", "add", "finance", "--name", "Finance", "--recipients", "*@finance.example",
         "--actor", "alice"),
        ("rules", "add", "partners", "--senders", "*@partner.example", "*@vendor.example",
         "--kata-action", "reject", "--tag", "[Partner KATA]", "--backup", "off",
         "--on-unavailable", "tempfail"),
        ("rules", "set", "finance", "--position", "20"),
        ("rules", "set", "partners", "--position", "5", "--no-tag", "--actor", "bob"),
        ("rules", "kata", "finance", "off", "--actor", "bob"),
        ("rules", "add", "temp"),
        ("rules", "delete", "temp", "--actor", "carol"),
        ("rules", "set", "default", "--kata-action", "reject", "--no-tag"),
    ]
    for argv in steps:
        code, _, err = run(*argv)
        assert (code, err) == (0, ""), argv
    # Then each wrote one event with the next version
    events = control_events(kafka_settings)
    assert [type(e) for e in events] == [RuleCreated, RuleCreated, RuleChanged, RuleChanged,
                                         RuleKataToggled, RuleCreated, RuleDeleted, RuleChanged]
    assert [getattr(e, "version", None) for e in events] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert {getattr(e, "actor", None) for e in events} == {ME}
    assert [getattr(e, "actor_note", None) for e in events][3:5] == ["bob", "bob"]
    # And the list is in matching order with the KATA sections as set
    listed = shown(run, "rules", "list")
    assert [r["rule_id"] for r in listed["rules"]] == ["partners", "finance"]
    partners, finance = listed["rules"]
    assert partners["kata"] == {"enabled": True, "action": "reject", "tag": None,
                                "backup": False, "on_unavailable": "tempfail"}
    assert partners["senders"] == ["*@partner.example", "*@vendor.example"]
    assert finance["kata"] == {"enabled": False, "action": "delete", "tag": "[KATA detect]",
                               "backup": True, "on_unavailable": None}
    # And a fold of the topic from offset 0 gives exactly what `rules list --json` prints
    state = refold(kafka_settings)
    assert listed == {
        "version": state.version,
        "rules": [r.model_dump(mode="json") for r in state.ordered_rules()],
        "default_rule": state.default_rule.model_dump(mode="json"),
    }
    # And the default rule keeps all but the KATA section it was given
    assert state.default_rule == DEFAULT_RULE.model_copy(
        update={"kata": DEFAULT_RULE.kata.model_copy(update={"action": "reject", "tag": None})})
    assert shown(run, "rules", "show", "default") == listed["default_rule"]
    assert shown(run, "rules", "show", "finance") == state.rules["finance"].model_dump(
        mode="json")
    # And the human views name the product's settings
    code, out, _ = run("rules", "show", "partners")
    assert re.search(r"^  If KATA detected an event: +Reject$", out, re.MULTILINE), out
    assert re.search(r"^  If KATA cannot answer: +'tempfail'$", out, re.MULTILINE), out
    code, out, _ = run("rules", "show", "finance")
    assert re.search(r"^  If KATA cannot answer: +global$", out, re.MULTILINE), out
    code, out, _ = run("rules", "list")
    assert out.splitlines()[1].split()[:2] == ["5", "partners"]


# Each refused command, and what its message must name. None of them may write anything.
REFUSED: list[tuple[list[str], str]] = [
    (["settings", "set", "--central-node-address", "kata.example.com"],
     "central_node_address: must be an IPv4 address"),
    (["settings", "set", "--port", "0"], "central_node_port: must be an integer in 1..65535"),
    (["settings", "set", "--port", "70000"], "central_node_port: must be an integer in 1..65535"),
    (["settings", "set", "--response-timeout", "30"],
     "response_timeout_s: must be an integer in 60..86400 seconds, got 30"),
    (["settings", "set", "--quarantine-max-size-mb", "0"],
     "quarantine_max_size_mb: must be an integer in 1..8796093022207 MB, got 0"),
    (["settings", "set", "--quarantine-max-messages", "4294967297"],
     "quarantine_max_messages: must be an integer in 1..4294967296, got 4294967297"),
    (["settings", "set", "--ndr", "sometimes"], "ndr_enabled: must be on or off"),
    (["settings", "set", "colour=blue"], "colour: unknown setting"),
    (["settings", "set"], "settings: name at least one setting"),
    (["settings", "set", "--central-node-address", "192.0.2.10", "--port", "443"],
     "nothing to change: central_node_address is already 192.0.2.10, central_node_port is "
     "already 443"),
    (["settings", "defaults"], "nothing to change: the defaults are already in force"),
    (["rules", "add", "finance"], "rule_id: a rule 'finance' already exists"),
    (["rules", "add", "Bad Id"], "rule_id: must be 1..64 lower-case letters"),
    (["rules", "add", "x", "--tag", ""], "kata.tag: must be 1..255 characters"),
    (["rules", "add", "x", "--on-unavailable", "later"],
     "kata.on_unavailable: must be one of global, skip, hold, tempfail, got 'later'"),
    (["rules", "add", "x", "--tag", "T" * 256], "kata.tag: must be 1..255 characters"),
    (["rules", "add", "x", "--tag", "[A]\r\nBcc: x@example.com"],
     "kata.tag: must not contain line breaks or control characters"),
    (["rules", "set", "finance", "--kata-action", "quarantine"],
     "kata.action: must be one of delete, reject, skip, got 'quarantine'"),
    (["rules", "set", "finance", "--kata-action", "delete"],
     "nothing to change: rule 'finance' already has kata.action 'delete'"),
    (["rules", "set", "finance"], "rule: name at least one field to change"),
    (["rules", "add", "x", "--position", "0"], "position: 0 is taken by rule 'finance'"),
    (["rules", "set", "hr", "--enabled", "off"], "rule_id: no rule 'hr' (rules: finance)"),
    (["rules", "delete", "hr"], "rule_id: no rule 'hr'"),
    (["rules", "kata", "finance", "maybe"], "kata.enabled: must be on or off"),
    (["rules", "kata", "finance", "on"], "kata.enabled: nothing to change"),
    (["rules", "set", "default", "--position", "5"], "position: the default rule's position "
                                                     "cannot be changed"),
    (["rules", "delete", "default"], "rule_id: the default rule cannot be deleted"),
    (["rules", "show", "hr"], "rule_id: no rule 'hr'"),
    (["kata", "disable"], "kata_protection: nothing to change, already disabled"),
    (["settings", "set", "--port", "444", "--note", "a\nb"],
     "note: must not contain line breaks or control characters, got U+000A at "
     "character 2"),
    (["settings", "set", "--port", "444", "--actor", "x" * 501],
     "note: must be 1..500 characters, got 501 characters"),
]


def test_a_refused_command_exits_2_names_the_field_and_writes_nothing(run, kafka_settings):
    # Given a configured gateway with one rule
    assert run("settings", "set", "--central-node-address", "192.0.2.10")[0] == 0
    assert run("rules", "add", "finance")[0] == 0
    before = control_events(kafka_settings)
    for argv, message in REFUSED:
        # When the command is refused
        code, out, err = run(*argv)
        # Then it exits 2 naming the field and range on stderr
        assert code == 2, (argv, out, err)
        assert message in err, (argv, err)
        assert err.startswith(f"katagate {argv[0]} {argv[1]}: "), err
    # And the log holds exactly what it held before
    assert control_events(kafka_settings) == before


def test_a_command_that_lost_a_race_with_another_administrator_writes_nothing(
        run, kafka_settings):
    # Given an administrator's command that has read the configuration (version 0)
    with ControlSession(kafka_settings) as slow:
        assert slow.state.version == 0
        # When another administrator's command runs to completion meanwhile
        assert run("settings", "set", "--port", "8443", "--actor", "fast")[0] == 0
        # Then the slow one, deciding on what it read, cannot commit
        event = change_settings(slow.state, {"central_node_port": 9443}, actor="slow",
                                now=datetime.now(UTC), event_id=uuid4())
        assert event.version == 1
        with pytest.raises(ConcurrentChange, match="nothing was written"):
            slow.append([event])
    # And the log holds the winner's change alone: versions stay unique
    [written] = control_events(kafka_settings)
    assert isinstance(written, KataSettingsChanged)
    assert (written.actor, written.actor_note, written.version) == (ME, "fast", 1)
    # And run again, it decides on the new state
    assert run("settings", "set", "--port", "9443", "--actor", "slow")[0] == 0
    assert [getattr(e, "version", None) for e in control_events(kafka_settings)] == [1, 2]


def test_the_installed_entry_point_exit_codes(kafka_settings):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
           "KATAGATE_TOPIC_PREFIX": kafka_settings.topic_prefix}
    command = [sys.executable, "-m", "katagate"]
    done = subprocess.run([*command, "rules", "add", "sales", "--json"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["events"][0]["type"] == "rule.created"
    refused = subprocess.run([*command, "settings", "set", "--response-timeout", "30"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "response_timeout_s: must be an integer in 60..86400 seconds, got 30" in (
        refused.stderr)


def test_kafka_unreachable_fails_with_1_but_a_bad_value_is_still_refused_with_2(
        monkeypatch, capsys):
    # Given no broker at the configured address
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("KATAGATE_REQUEST_TIMEOUT_S", "2")
    # Then a command that must read or write fails (exit 1) saying why
    assert main(["settings", "show"]) == 1
    assert "katagate settings: reading" in capsys.readouterr().err
    assert main(["rules", "add", "finance"]) == 1
    assert "init_transactions failed" in capsys.readouterr().err
    # And a bad value is refused before Kafka is contacted
    assert main(["settings", "set", "--port", "0"]) == 2
    assert "central_node_port: must be an integer in 1..65535, got 0" in capsys.readouterr().err


def test_reading_a_namespace_without_topics_names_the_remedy_and_an_empty_one_is_empty(
        run, monkeypatch, kafka_settings):
    # Given the test's namespace, whose quarantine ledger is empty
    # Then nothing waits there to release (a partition whose end is 0 is not read at all)
    code, out, err = run("quarantine", "release", "AAAAAAAA0001")
    assert (code, out) == (2, "")
    assert "not waiting in the KATA Quarantine: AAAAAAAA0001; nothing was done" in err
    # And in a namespace whose topics were never created, reading says what to run (exit 1)
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", f"t{uuid4().hex[:12]}")
    for argv in (["settings", "show"], ["quarantine", "release", "AAAAAAAA0001"]):
        code, out, err = run(*argv)
        assert (code, out) == (1, "")
        assert "does not exist: run `katagate topics create`" in err


def test_a_send_now_from_the_cli_names_the_os_user_and_keeps_the_note_apart(
        run, kafka_settings):
    # Given a message waiting in the KATA Quarantine
    admitted = next(e for e in sample_events() if isinstance(e, QuarantineAdmitted))
    names = TopicNames(kafka_settings.topic_prefix)
    producer = TransactionalProducer(kafka_settings, f"{kafka_settings.topic_prefix}-test-ledger")
    producer.begin()
    producer.produce([Outgoing.event(names.quarantine, admitted)])
    producer.commit()
    producer.close()
    # When an administrator sends it on, claiming to be someone else
    code, out, err = run("quarantine", "release", admitted.message_id, "--comment", "expected",
                         "--actor", "root-of-all-evil")
    assert (code, out, err) == (0, f"send-now of {admitted.message_id} recorded\n", "")
    # Then the event names the OS user as the actor; the claim is only a note, in its own field
    [release] = [decode_event(r.value or b"") for r in read_all(kafka_settings, names.mail)]
    assert isinstance(release, ForcedRelease)
    assert (release.actor, release.actor_note, release.comment) == (
        ME, "root-of-all-evil", "expected")
    assert release.producer.instance == ME
