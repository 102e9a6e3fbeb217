"""`katagate messages search`, `backup list|resend|delete`, `queue list|retry` against the real
projector on a real broker: the rows it serves, the refusals it words, and the request events
the commands write (with the actor) or do not write."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import decode_event
from tests.integration.kafka_read import read_all
from tests.integration.test_admin_read_cli import Projector, cli
from tests.integration.test_projector_live import caught_up, publish_routed, running
from tests.unit.test_projector_flows import message_flow

pytestmark = pytest.mark.kafka


@pytest.fixture
def tools(kafka_settings: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Projector]:
    """A projector that folded: 1 clean, 3 deleted with a copy since removed, 4 deleted with a
    copy held, 5 deferred and waiting for a retry."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", kafka_settings.topic_prefix)
    routed = (message_flow(1, "clean") + message_flow(3, "backup") + message_flow(4, "backup")
              + message_flow(5, "queued"))
    publish_routed(kafka_settings, routed)
    state = tmp_path / "projector"
    with running(kafka_settings, state) as live:
        caught_up(live, len(routed))
        assert live.address is not None
        yield live, ["--projector-url", f"http://127.0.0.1:{live.address[1]}",
                     "--projector-token-file", str(state / "test-read-token")]


def written(kafka: KafkaSettings, kind: str, at_least: int = 0, wait_s: float = 10.0) -> list:
    """The events of `kind` in the log, read again until there are `at_least`: a transaction's
    commit returns once the coordinator has logged it, and the markers that make its records
    readable reach the partitions a moment later (CI once read the log in between)."""
    deadline = time.monotonic() + wait_s
    while True:
        records = read_all(kafka, TopicNames(kafka.topic_prefix).mail)
        events = [e for e in (decode_event(r.value) for r in records) if e.type == kind]
        if len(events) >= at_least or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_given_messages_when_searched_then_filters_select_and_a_bad_value_names_the_allowed(
        tools: Projector, capsys: pytest.CaptureFixture[str]) -> None:
    _live, where = tools
    code, out, err = cli(capsys, "messages", "search", "--json", *where)
    assert (code, err) == (0, "")
    every = json.loads(out)["messages"]
    assert {m["message_id"] for m in every} == {f"MSG0000000{i}" for i in (1, 3, 4, 5)}
    sender = next(m["envelope_from"] for m in every if m["message_id"] == "MSG00000001")
    code, out, err = cli(capsys, "messages", "search", "--from", sender, "--status", "delivered",
                         *where)
    assert (code, err) == (0, "")
    assert "MSG00000001" in out
    assert "MSG00000004" not in out
    assert out.splitlines()[0].split()[:3] == ["time", "(UTC)", "id"]
    code, out, err = cli(capsys, "messages", "search", "--verdict", "bogus", *where)
    assert (code, out) == (2, "")
    assert err.startswith("katagate messages search: ")
    assert "verdict" in err
    assert "not_detected" in err
    assert "skipped:size_limit" in err


def test_given_the_backup_when_a_held_copy_is_resent_and_deleted_then_requests_are_written(
        tools: Projector, kafka_settings: KafkaSettings,
        capsys: pytest.CaptureFixture[str]) -> None:
    _live, where = tools
    code, out, err = cli(capsys, "backup", "list", "--json", *where)
    assert (code, err) == (0, "")
    rows = {r["message_id"]: r for r in json.loads(out)["messages"]}
    assert rows["MSG00000004"]["backup"]["state"] == "held"
    assert rows["MSG00000003"]["backup"]["state"] == "removed"
    code, out, err = cli(capsys, "backup", "list", "--state", "held", *where)
    assert "MSG00000004" in out
    assert "MSG00000003" not in out
    # A copy no longer held: refused, nothing written
    code, out, err = cli(capsys, "backup", "resend", "MSG00000003", *where)
    assert (code, out) == (2, "")
    assert "MSG00000003 is not held in the Backup" in err
    # A held one: resent to an address given, with the copy's place and digest from its row
    code, out, err = cli(capsys, "backup", "resend", "MSG00000004", "--to", "help@example.com",
                         "--comment", "false positive", "--note", "ticket 12", *where)
    assert (code, err) == (0, ""), err
    [resend] = [e for e in written(kafka_settings, "backup.resend_requested", 1)
                if e.actor.startswith("cli:")]
    assert resend.message_id == "MSG00000004"
    assert (resend.recipients, resend.to_original) == (["help@example.com"], False)
    assert resend.actor.startswith("cli:")
    assert (resend.comment, resend.actor_note) == ("false positive", "ticket 12")
    assert resend.sha256 == rows["MSG00000004"]["sha256"]
    assert resend.location.model_dump() == rows["MSG00000004"]["location"]
    code, out, err = cli(capsys, "backup", "delete", "MSG00000004", *where)
    assert (code, err) == (0, "")
    [deletion] = [e for e in written(kafka_settings, "backup.delete_requested", 1)
                  if e.actor.startswith("cli:")]
    assert deletion.actor == resend.actor


def test_given_the_delivery_queue_when_listed_and_retried_then_only_a_deferred_one_is_acted_on(
        tools: Projector, kafka_settings: KafkaSettings,
        capsys: pytest.CaptureFixture[str]) -> None:
    _live, where = tools
    code, out, err = cli(capsys, "queue", "list", "--json", *where)
    assert (code, err) == (0, "")
    assert [m["message_id"] for m in json.loads(out)["messages"]] == ["MSG00000005"]
    before = len(written(kafka_settings, "queue.action_requested"))
    code, out, err = cli(capsys, "queue", "retry", "MSG00000001", *where)
    assert (code, out) == (2, "")
    assert "its status is delivered" in err
    code, out, err = cli(capsys, "queue", "bounce", "MSG00000005", "--comment", "gone", *where)
    assert (code, err) == (0, "")
    asked = written(kafka_settings, "queue.action_requested", before + 1)
    assert len(asked) == before + 1
    assert (asked[-1].message_id, asked[-1].action, asked[-1].comment) == (
        "MSG00000005", "bounce", "gone")
