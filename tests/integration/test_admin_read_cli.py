"""The administrator's reading commands over real sockets: `katagate messages show` against the
real projector on a real broker, the projector client's refusals as the projector words them,
the queue's actions refused for a message that is not deferred (nothing written), and a Backup
copy read back from `katagate.backup` by its row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from katagate.admin.backup_copy import read_copy
from katagate.admin.errors import InvalidCommand, NotFound
from katagate.admin.mail_view import view
from katagate.admin.projector_reader import ProjectorReader, ProjectorUnavailable
from katagate.cli import main
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.raw import RawUnavailable, chunk
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.projector.live import LiveProjection
from tests.integration.kafka_read import read_all
from tests.integration.test_projector_live import caught_up, get, publish_routed, running
from tests.unit.test_projector_flows import message_flow

pytestmark = pytest.mark.kafka
Projector = tuple[LiveProjection, list[str]]


@pytest.fixture
def projector(kafka_settings: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[Projector]:
    """A running projector that has folded two messages, and the options that reach it."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", kafka_settings.topic_prefix)
    routed = message_flow(1, "clean") + message_flow(2, "deleted")
    publish_routed(kafka_settings, routed)
    state = tmp_path / "projector"
    with running(kafka_settings, state) as live:
        caught_up(live, len(routed))
        assert live.address is not None
        yield live, ["--projector-url", f"http://127.0.0.1:{live.address[1]}",
                     "--projector-token-file", str(state / "test-read-token")]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_given_a_message_when_its_timeline_is_shown_then_every_event_is_printed_with_its_time(
        projector: Projector, capsys: pytest.CaptureFixture[str]) -> None:
    live, where = projector
    code, out, err = cli(capsys, "messages", "show", "MSG00000002", "--json", *where)
    assert (code, err) == (0, "")
    # --json is the projector's own answer
    assert json.loads(out) == json.loads(get(live, "/messages/MSG00000002")[1])
    code, out, err = cli(capsys, "messages", "show", "MSG00000002", *where)
    assert (code, err) == (0, "")
    events = json.loads(get(live, "/messages/MSG00000002")[1])["events"]
    lines = out.splitlines()
    assert "message_id:      MSG00000002" in lines
    # one line per event, in the timeline's order, each with its time and type
    timeline = [line for line in lines if line[:4].isdigit()]
    assert [line.split()[2] for line in timeline] == [e["type"] for e in events]
    assert timeline[0].startswith(events[0]["occurred_at"][:19].replace("T", " "))


def test_given_an_unknown_or_malformed_id_then_show_is_refused_with_exit_2(
        projector: Projector, capsys: pytest.CaptureFixture[str]) -> None:
    _live, where = projector
    code, out, err = cli(capsys, "messages", "show", "MSG99999999", *where)
    assert (code, out) == (2, "")
    assert "unknown message id MSG99999999" in err
    code, _out, err = cli(capsys, "messages", "show", "../state", *where)
    assert code == 2
    assert err.startswith("katagate messages show: message_id: expected 8-64")


def test_given_a_refused_parameter_then_the_client_names_it_with_the_allowed_values(
        projector: Projector) -> None:
    _live, where = projector
    url, token = where[1], Path(where[3])
    reader = ProjectorReader(url, token)
    with pytest.raises(InvalidCommand) as refused:
        reader.get("/messages", {"action": "bogus"})
    assert refused.value.field == "action"
    assert isinstance(refused.value.allowed, list)
    assert "deliver" in refused.value.allowed
    assert "deliver" in str(refused.value)
    with pytest.raises(NotFound):
        reader.get("/messages/MSG99999999")


def test_given_no_token_or_a_wrong_one_then_the_commands_say_which_setting_to_check(
        projector: Projector, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _live, where = projector
    url = where[1]
    code, _out, err = cli(capsys, "messages", "show", "MSG00000001", "--projector-url", url,
                          "--projector-token-file", str(tmp_path / "none"))
    assert code == 1
    assert "--projector-token-file" in err
    wrong = tmp_path / "wrong"
    wrong.write_text("kgp_" + "x" * 43 + "\n")
    with pytest.raises(ProjectorUnavailable, match=r"refused the CLI \(401"):
        ProjectorReader(url, wrong).get("/messages/MSG00000001")
    # The token is read from its file, never shown
    code, _out, err = cli(capsys, "messages", "show", "MSG00000001", "--projector-url", url,
                          "--projector-token-file", str(wrong))
    assert code == 1
    assert "x" * 43 not in err


@pytest.mark.parametrize("action", ["retry", "bounce", "delete"])
def test_given_a_delivered_message_when_a_queue_action_is_asked_then_it_is_refused_unwritten(
        projector: Projector, kafka_settings: KafkaSettings, capsys: pytest.CaptureFixture[str],
        action: str) -> None:
    _live, where = projector
    mail = TopicNames(kafka_settings.topic_prefix).mail
    before = len(read_all(kafka_settings, mail))
    for message_id in ("MSG00000001", "MSG99999999"):  # delivered; never seen
        code, out, err = cli(capsys, "queue", action, message_id, "--comment", "x", *where)
        assert (code, out) == (2, "")
        assert f"message_id: {message_id} is not waiting for a retry" in err
    code, _out, err = cli(capsys, "queue", action, "MSG00000001", "--note", "a\nb", *where)
    assert code == 2
    assert "note" in err
    assert len(read_all(kafka_settings, mail)) == before


def test_given_a_backup_copy_then_it_is_read_back_by_its_row_and_checked(
        kafka_settings: KafkaSettings) -> None:
    # Given a copy written to katagate.backup as apply writes one
    backup = TopicNames(kafka_settings.topic_prefix).backup
    data = (b"From: partner@example.org\r\nSubject: =?utf-8?q?Rechnung_M=C3=A4rz?=\r\n\r\n"
            b"EICAR-ish body\r\n")
    chunked = chunk(backup, "MSG00000007", data, chunk_bytes=16)
    producer = TransactionalProducer(kafka_settings, "test-backup-writer")
    producer.begin()
    producer.produce(chunked.records)
    producer.commit()
    producer.close()
    records = [r for r in read_all(kafka_settings, backup) if r.key == b"MSG00000007"]
    row = {"message_id": "MSG00000007", "envelope_from": "partner@example.org",
           "recipients": ["bob@example.net"], "sha256": chunked.sha256,
           "backup": {"state": "held"}, "removed": None,
           "location": {"topic": backup, "partition": records[0].partition,
                        "offsets": [r.offset for r in records], "chunk_bytes": 16}}
    # When it is read by its row, as `backup show|download` does
    assert read_copy(kafka_settings, row) == data
    assert dict(view(read_copy(kafka_settings, row), 1 << 20).headers)["Subject"] == (
        "Rechnung März")
    # A digest that does not match, or a copy no longer held, is not read
    with pytest.raises(RawUnavailable, match="sha256"):
        read_copy(kafka_settings, {**row, "sha256": "0" * 64})
    with pytest.raises(InvalidCommand, match="not held"):
        read_copy(kafka_settings, {**row, "backup": {"state": "removed",
                                                     "cause": "expired_age"}})


def test_given_bad_resend_addresses_or_an_existing_file_then_backup_refuses_before_asking(
        projector: Projector, kafka_settings: KafkaSettings, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _live, where = projector
    mail = TopicNames(kafka_settings.topic_prefix).mail
    before = len(read_all(kafka_settings, mail))
    # a recipient that is no address, or one that smuggles an SMTP command: refused, naming `to`
    for bad in ("not-an-address", "a@example.com>\r\nRCPT TO:<evil@x.example"):
        code, out, err = cli(capsys, "backup", "resend", "MSG00000002", "--to", "ok@example.com",
                             bad, *where)
        assert (code, out) == (2, "")
        assert err.startswith("katagate backup resend: to: not an address")
    # a file already there is never overwritten
    existing = tmp_path / "copy.eml"
    existing.write_bytes(b"mine")
    code, out, err = cli(capsys, "backup", "download", "MSG00000002", "--out", str(existing),
                         *where)
    assert (code, out) == (2, "")
    assert "out: " in err
    assert "never overwrites" in err
    assert existing.read_bytes() == b"mine"
    # a message id that is none: refused before anything is read or written
    for action in ("show", "download", "delete"):
        code, _out, err = cli(capsys, "backup", action, "x/../y", *where)
        assert code == 2
        assert "message_id: expected 8-64" in err
    assert len(read_all(kafka_settings, mail)) == before
