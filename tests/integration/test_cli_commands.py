"""Given the real broker, the operator's commands that read or write the log: `topics
create|list`, `kata state|pin`, `audit reconcile` and `projector replay --until-offset|--as-of`,
run in-process as `katagate ...` against this test's namespace."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from functools import reduce
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from katagate.cli import main
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames, topic_specs
from katagate.projector.views import Projections, evolve
from katagate.schemas import (
    CentralNodeObserved,
    ConnectionStateChanged,
    NodeAddress,
    SensorKeyGenerated,
    decode_event,
)
from tests.integration.kafka_read import control_events, read_all
from tests.integration.kata_harness import publish
from tests.integration.test_projector_live import publish_routed
from tests.unit.fixtures.events import sample_events
from tests.unit.test_projector_flows import all_flows, message_flow

pytestmark = pytest.mark.kafka

FINGERPRINT = ":".join(f"{b:02X}" for b in range(0xA0, 0xC0))  # 32 bytes, canonical form


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`katagate ARGS` in-process against a namespace: cli(settings)(*argv) -> (code, out, err)."""

    def bind(kafka: KafkaSettings) -> Any:
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
        monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", kafka.topic_prefix)
        monkeypatch.setenv("KATAGATE_MAIL_PARTITIONS", str(kafka.mail_partitions))

        def run_cli(*argv: str) -> tuple[int, str, str]:
            code = main(list(argv))
            out, err = capsys.readouterr()
            return code, out, err

        return run_cli

    return bind


# --- katagate topics create|list ------------------------------------------------------------


def test_topics_list_shows_what_is_missing_and_create_makes_it_once(cli, kafka_bootstrap):
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap,
                          topic_prefix=f"t{uuid.uuid4().hex[:12]}", mail_partitions=3)
    run = cli(kafka)
    specs = topic_specs(kafka)
    assert len(specs) >= 7

    # Given a namespace without topics, list names each one MISSING and exits 1
    code, out, err = run("topics", "list")
    assert (code, err) == (1, "")
    assert out.splitlines() == [f"MISSING    {s.name:32} 0/{s.partitions}  {s.purpose}"
                                for s in specs]

    # When they are created, each is named with its partitions
    code, out, _ = run("topics", "create")
    assert code == 0
    assert out.splitlines() == [f"created  {s.name} ({s.partitions} partitions)" for s in specs]
    # Then the broker has them, with those partitions
    topics = new_admin(kafka).list_topics(timeout=30).topics
    for spec in specs:
        assert len(topics[spec.name].partitions) == spec.partitions
    assert len(topics[TopicNames(kafka.topic_prefix).mail].partitions) == 3

    # And list says ok for each, and exits 0
    code, out, _ = run("topics", "list")
    assert code == 0
    assert out.splitlines() == [f"ok         {s.name:32} {s.partitions}/{s.partitions}  "
                                f"{s.purpose}" for s in specs]
    # And create again creates nothing
    assert run("topics", "create") == (0, "".join(
        f"exists   {s.name} ({s.partitions} partitions)\n" for s in specs), "")


def test_topics_create_refuses_a_topic_with_another_partition_count(cli, kafka_settings,
                                                                    monkeypatch):
    run = cli(kafka_settings)
    monkeypatch.setenv("KATAGATE_MAIL_PARTITIONS", "4")
    code, out, err = run("topics", "create")
    mail = TopicNames(kafka_settings.topic_prefix).mail
    assert (code, out) == (1, "")
    assert err.startswith(f"katagate topics: topic {mail} has 3 partitions, katagate needs 4")
    # list shows the count it has against the count asked
    code, out, _ = run("topics", "list")
    [line] = [line for line in out.splitlines() if f" {mail} " in line]
    assert line.startswith("PARTITIONS ")
    assert " 3/4 " in line
    assert code == 1


def test_a_command_that_cannot_reach_kafka_says_so_in_one_line(cli, kafka_settings, monkeypatch):
    # Given a broker address where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    run = cli(kafka_settings.model_copy(update={"bootstrap_servers": dead}))
    monkeypatch.setenv("KATAGATE_REQUEST_TIMEOUT_S", "2")
    # When a command that asks the broker runs, it fails with one line naming Kafka, no traceback
    code, out, err = run("topics", "list")
    assert code == 1
    assert out == ""
    assert err.startswith("katagate topics: Kafka: ")
    assert "Traceback" not in err


# --- katagate kata state|pin ----------------------------------------------------------------


def row(name: str, value: str) -> str:
    """A line of the human view of `kata state`."""
    return f"{name + ':':32} {value}"


def window(run: Any) -> dict[str, Any]:
    code, out, err = run("kata", "state", "--json")
    assert (code, err) == (0, "")
    shown: dict[str, Any] = json.loads(out)
    return shown


def test_kata_state_and_pinning_the_central_nodes_key(cli, kafka_settings):
    run = cli(kafka_settings)
    # Given an empty control topic: nothing configured, nothing seen
    assert window(run) == {
        "central_node_address": "", "central_node_port": 443,
        "connection_state": "not_configured", "since": None, "detail": "",
        "ksmg_public_key_fingerprint": None, "sensor_id": None,
        "kata_public_key_fingerprint": None, "kata_public_key_pinned": None,
        "kata_certificate_not_after": None, "kata_public_key_confirmation_required": None,
    }
    code, out, _ = run("kata", "state")
    assert code == 0
    assert out.splitlines() == [
        row("KATA Central Node IPv4-address", "(not set)"),
        row("Connection state", "Not configured"),
        row("KSMG public key fingerprint", "(no key yet)"),
        row("KATA public key fingerprint", "(not seen yet)"),
        row("KATA key pinned", "no"),
    ]

    # A pin without a Central Node address is refused naming the setting; nothing written
    code, out, err = run("kata", "pin", FINGERPRINT, "--actor", "bob")
    assert (code, out) == (2, "")
    assert err == ("katagate kata pin: central_node_address: set the KATA Central Node IPv4 "
                   "address before pinning its key\n")
    assert control_events(kafka_settings) == []

    assert run("settings", "set", "--central-node-address", "192.0.2.10", "--port", "8443",
               "--actor", "alice")[0] == 0

    # A fingerprint that is not 32 hex bytes is refused with exit 2 naming the field
    for bad in ("zz", FINGERPRINT.replace("A", "G")):  # too short; not hex
        code, out, err = run("kata", "pin", bad, "--actor", "bob")
        assert (code, out) == (2, "")
        assert err == ("katagate kata pin: fingerprint: expected a SHA-256 public key "
                       f"fingerprint, 32 hex bytes (e.g. AB:CD:...), got {bad!r}\n")
    assert len(control_events(kafka_settings)) == 1  # the settings change only

    # When the administrator pins the key as KATA shows it (lower case, no colons)
    pasted = FINGERPRINT.replace(":", "").lower()
    code, out, err = run("kata", "pin", pasted, "--actor", "bob")
    assert (code, err) == (0, "")
    assert out == f"pinned {FINGERPRINT} for 192.0.2.10:8443\n"
    # Then one CentralNodeObserved is written: pinned, canonical, for the configured node, by bob
    events = control_events(kafka_settings)
    assert len(events) == 2
    pin = events[-1]
    assert isinstance(pin, CentralNodeObserved)
    assert (pin.pinned, pin.fingerprint) == (True, FINGERPRINT)
    assert (str(pin.central_node.address), pin.central_node.port) == ("192.0.2.10", 8443)
    # ... by the OS user running the CLI, with what --actor said kept as a note
    assert (pin.producer.stage, pin.producer.instance) == (
        "admin", f"cli:{pwd.getpwuid(os.geteuid()).pw_name}")
    assert pin.actor_note == "bob"
    # And the state window shows it pinned for that node
    shown = window(run)
    assert (shown["central_node_address"], shown["central_node_port"]) == ("192.0.2.10", 8443)
    assert shown["kata_public_key_pinned"] == shown["kata_public_key_fingerprint"] == FINGERPRINT

    # When the scanner records its key and the connection, the window shows them
    samples = {e.type: e for e in sample_events()}
    sensor = samples["sensor.key_generated"]
    assert isinstance(sensor, SensorKeyGenerated)
    state = samples["connection.state_changed"]
    assert isinstance(state, ConnectionStateChanged)
    publish(kafka_settings, TopicNames(kafka_settings.topic_prefix).control, [
        sensor.model_copy(update={"event_id": uuid.uuid4()}),
        state.model_copy(update={"event_id": uuid.uuid4()})])
    shown = window(run)
    assert (shown["sensor_id"], shown["ksmg_public_key_fingerprint"]) == (
        sensor.sensor_id, sensor.fingerprint)
    assert (shown["connection_state"], shown["detail"]) == ("awaiting_confirmation",
                                                            state.detail)
    assert shown["since"] == state.occurred_at.isoformat()
    code, out, _ = run("kata", "state")
    assert out.splitlines() == [
        row("KATA Central Node IPv4-address", "192.0.2.10"),
        row("Connection state", f"Awaiting confirmation since {shown['since']}"),
        row("KSMG public key fingerprint", sensor.fingerprint),
        row("KATA public key fingerprint", FINGERPRINT),
        row("KATA key pinned", "yes"),
        row("Detail", state.detail),
    ]

    # When the Central Node moves to another address, the old pin no longer applies to it
    assert run("settings", "set", "--central-node-address", "192.0.2.20", "--actor",
               "alice")[0] == 0
    shown = window(run)
    assert shown["central_node_address"] == "192.0.2.20"
    assert shown["kata_public_key_pinned"] is None
    assert shown["kata_public_key_fingerprint"] == FINGERPRINT  # seen, but not pinned for it


def test_kata_state_shows_the_certificate_expiry_and_the_key_an_administrator_must_confirm(
        cli, kafka_settings):
    """Given require_manual_pin: the scanner saw KATA's key (with its certificate's expiry) and
    recorded Connecting with the pin left to an administrator."""
    run = cli(kafka_settings)
    assert run("settings", "set", "--central-node-address", "192.0.2.10", "--port", "8443",
               "--actor", "alice")[0] == 0
    samples = {e.type: e for e in sample_events()}
    node = NodeAddress(address=IPv4Address("192.0.2.10"), port=8443)
    observed = samples["central_node.observed"].model_copy(update={
        "event_id": uuid.uuid4(), "central_node": node, "fingerprint": FINGERPRINT,
        "pinned": False, "certificate_not_after": datetime(2027, 1, 31, tzinfo=UTC)})
    waiting = samples["connection.state_changed"].model_copy(update={
        "event_id": uuid.uuid4(), "state": "connecting", "central_node": node,
        "detail": "require_manual_pin is on", "pin_required": True})
    publish(kafka_settings, TopicNames(kafka_settings.topic_prefix).control, [observed, waiting])
    # When the window is read, Then it names the key to confirm and the expiry
    shown = window(run)
    assert shown["connection_state"] == "connecting"
    assert shown["kata_public_key_confirmation_required"] == FINGERPRINT
    assert shown["kata_certificate_not_after"] == "2027-01-31T00:00:00+00:00"
    _code, out, _ = run("kata", "state")
    assert row("KATA certificate valid until", "2027-01-31T00:00:00+00:00") in out.splitlines()
    assert row("Action needed", "an administrator must confirm the KATA public key fingerprint "
               f"above with KATA's, then run: katagate kata pin {FINGERPRINT}") in out.splitlines()
    # When the administrator pins it, Then nothing is asked any more
    assert run("kata", "pin", FINGERPRINT, "--actor", "bob")[0] == 0
    shown = window(run)
    assert shown["kata_public_key_confirmation_required"] is None
    assert shown["kata_public_key_pinned"] == FINGERPRINT


# --- katagate audit reconcile ---------------------------------------------------------------


def test_audit_reconcile_balances_the_accounts_and_lists_what_is_unsettled(
        cli, kafka_settings):
    run = cli(kafka_settings)
    # Given message 0 delivered, message 1 decided but not delivered yet, message 2 admitted
    # and never submitted (its deadline long past)
    delivered = message_flow(0, "clean")
    undelivered = message_flow(1, "clean")[:-1]
    # received, admitted and its mirror; message 0's content and envelope, as a resend's
    first = delivered[0][1]
    waiting = [(t, e.model_copy(update={"envelope_from": first.envelope_from,
                                        "envelope_to": first.envelope_to}))
               if e.type == "mail.received" else (t, e)
               for t, e in message_flow(2, "clean")[:3]]
    assert [e.type for _t, e in waiting] == ["mail.received", "quarantine.admitted",
                                             "quarantine.admitted"]
    publish_routed(kafka_settings, delivered + undelivered + waiting)
    admitted_2 = waiting[1][1]

    code, out, err = run("audit", "reconcile")
    assert (code, err) == (0, "")
    deadline = admitted_2.deadline_at.isoformat()  # type: ignore[attr-defined]
    assert out.splitlines() == [
        "accepted: 3, terminal exactly once: 1, without a terminal event: 2",
        "  MSG00000001: decided_deliver_not_yet_carried_out",
        f"  MSG00000002: waiting_for_submission until {deadline} (OVERDUE)",
        # Messages 0 and 2 share content and envelope: they look like a resend
        "quarantine slots held: 1; possible resends: 1; undecodable records: 0",
    ]
    # --settled: a message without its terminal event fails the check
    assert run("audit", "reconcile", "--settled")[0] == 1

    code, out, _ = run("audit", "reconcile", "--json")
    report = json.loads(out)
    assert code == 0
    assert (report["accepted"], report["terminal_exactly_once"], report["balanced"]) == (
        3, 1, True)
    assert [w["message_id"] for w in report["without_terminal"]] == ["MSG00000001",
                                                                      "MSG00000002"]
    assert [h["message_id"] for h in report["quarantine_held"]] == ["MSG00000002"]
    assert report["possible_resends"] == [["MSG00000000", "MSG00000002"]]
    assert report["records_read"] == len([t for t, _ in delivered + undelivered + waiting
                                          if t in ("mail", "quarantine")])

    # A window: message 0 was received at 09:26:53, message 1 at 09:27:23, message 2 at 09:27:53
    code, out, _ = run("audit", "reconcile", "--until", "2025-03-14T10:27:00+01:00",
                       "--settled", "--json")
    window_report = json.loads(out)
    assert (code, window_report["accepted"], window_report["terminal_exactly_once"]) == (0, 1, 1)
    assert window_report["until"] == "2025-03-14T09:27:00+00:00"
    code, out, _ = run("audit", "reconcile", "--since", "2025-03-14T09:27:00Z",
                       "--until", "2025-03-14T09:27:30Z")
    assert (code, out.splitlines()[0]) == (
        0, "accepted: 1, terminal exactly once: 0, without a terminal event: 1")

    # When message 0 gets a second terminal event and a terminal event has no acceptance
    second = delivered[-1][1].model_copy(update={"event_id": uuid.uuid4()})
    orphan = message_flow(9, "clean")[-1][1]
    publish(kafka_settings, TopicNames(kafka_settings.topic_prefix).mail, [second, orphan])
    code, out, _ = run("audit", "reconcile")
    # Then the accounts do not balance: exit 1, each named
    assert code == 1
    assert "  DUPLICATE MSG00000000: delivered, delivered" in out.splitlines()
    assert "  TERMINAL WITHOUT ACCEPTANCE MSG00000009" in out.splitlines()


# --- katagate projector replay --until-offset N | --as-of TIME ------------------------------


def test_replay_bounded_by_offset_or_instant_from_the_command_line(cli, kafka_settings,
                                                                   tmp_path: Path):
    run = cli(kafka_settings)
    # Given two batches of mail written a moment apart
    first = all_flows(3)
    publish_routed(kafka_settings, first)
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    publish_routed(kafka_settings, [p for i in range(3, 6) for p in message_flow(i)])
    names = TopicNames(kafka_settings.topic_prefix)
    records = [r for topic in (names.mail, names.quarantine, names.control)
               for r in read_all(kafka_settings, topic)]

    # When replayed as of the instant between them, given in another zone
    local = between.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert local.endswith("+05:30")
    out_dir = tmp_path / "as-of"
    code, out, err = run("projector", "replay", "--as-of", local, "--out", str(out_dir))
    assert code == 0
    # Then it read the first batch only, and wrote every view and the positions
    assert f"replayed {len(first)} records in " in err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "connection.json", "counters.json", "positions.json", "quarantine.json",
        "timelines.jsonl"]
    assert out.splitlines() == [str(out_dir / name) for name in (
        "connection.json", "quarantine.json", "counters.json", "timelines.jsonl",
        "positions.json")]
    kept = [r for r in records if r.timestamp_ms <= between.timestamp() * 1000]
    expected = reduce(lambda v, r: evolve(v, decode_event(r.value or b"")), kept, Projections())
    for name in ("connection", "quarantine", "counters"):
        assert (out_dir / f"{name}.json").read_bytes() == expected.document(name)

    # When replayed up to offset 2 of each partition
    out_dir = tmp_path / "until"
    code, _, err = run("projector", "replay", "--until-offset", "2", "--out", str(out_dir),
                       "--timelines", "csv")
    assert code == 0
    before_2 = [r for r in records if r.offset < 2]
    assert f"replayed {len(before_2)} records in " in err
    positions = json.loads((out_dir / "positions.json").read_text())
    assert {(p["topic"], p["partition"]): p["next_offset"] for p in positions} == {
        (topic, partition): min(2, len([r for r in records
                                        if (r.topic, r.partition) == (topic, partition)]))
        for topic, partition in {(p["topic"], p["partition"]) for p in positions}}
    assert (out_dir / "timelines.csv").exists()

    # And `audit replay` is the same command; without --out it prints the views as JSON
    # (a process of its own: print_views writes to the sys.stdout of its import)
    printed = subprocess.run(
        [sys.executable, "-m", "katagate", "audit", "replay", "--until-offset", "0"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
             "KATAGATE_TOPIC_PREFIX": kafka_settings.topic_prefix})
    assert printed.returncode == 0, printed.stderr
    assert "replayed 0 records in " in printed.stderr
    assert json.loads(printed.stdout) == {name: Projections().view(name)
                                          for name in ("connection", "quarantine", "counters")}
