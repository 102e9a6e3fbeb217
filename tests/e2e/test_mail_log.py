"""The mail log on the whole gateway: `katagate up` runs every stage as a process, its
katagate.toml asking for JSON logs ([logging] format); an EICAR message goes in over SMTP and
is deleted by the default rule. Then the lines for that message, gathered from every stage's
log, are its timeline as the projector shows it: one line per event, by the stage that wrote
it, in the same order."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from katagate.eventlog.broker import free_port, free_port_run
from katagate.projector.guard import token_file
from katagate.schemas import MAIL_LIFECYCLE
from tests.conftest import ensure_namespace
from tests.e2e.test_dashboard_prometheus import EICAR, Up, get_json, mail, smtp_send
from tests.e2e.up_env import up_env
from tests.integration.kata_harness import wait_for

pytestmark = pytest.mark.kafka

RANK = {name: rank for rank, name in enumerate(MAIL_LIFECYCLE)}
MILLISECOND = timedelta(milliseconds=1)
LOG_OF_STAGE = {"ingest": "ingest.log", "scanner": "scanner.log", "decider": "decider.log"}


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def mail_log_lines(logs: Path, message_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every mail log record of `message_id` in every process's log: (log file, record)."""
    found = []
    for path in sorted(logs.glob("*.log")):
        for text in path.read_text(errors="replace").splitlines():
            if not text.startswith("{"):
                continue  # librdkafka's own lines, a child's ready line
            record = json.loads(text)
            if record.get("logger") == "katagate.maillog" and \
                    record.get("message_id") == message_id:
                found.append((path.name, record))
    return found


def test_the_lines_of_one_message_from_every_stage_are_its_timeline(kafka_bootstrap, tmp_path):
    kafka = ensure_namespace(kafka_bootstrap)
    state = tmp_path / "state"
    smtp_port, projector_port, sink_port = free_port(), free_port(), free_port()
    config = tmp_path / "katagate.toml"
    config.write_text(f"""
[paths]
state_dir = "{state}"
[logging]
format = "json"
[ingest]
port = {smtp_port}
relay_domains = ["example.net"]
[decider]
next_hop_port = {sink_port}
helo_name = "gw.example.net"
[scanner]
recheck_s = 0.3
[kata]
central_node = "emulator"
poll_interval_s = 1
[emulator]
port = 0
[projector]
port = {projector_port}
[console]
port = {free_port()}
[metrics]
base_port = {free_port_run(7)}
[sink]
port = {sink_port}
""")
    env = up_env(kafka, tmp_path)
    token = token_file(state / "projector" / "tokens.json").create("mail-log-test", "now")

    def projected(path: str) -> Any:
        return get_json(f"http://127.0.0.1:{projector_port}{path}", token=token)

    up = Up(config, env, tmp_path / "up.log")
    try:
        up.wait_line("katagate is up", 120)
        wait_for(lambda: projected("/state/connection")["connection_state"] == "connected",
                 60, "connected")
        # Given an EICAR message, deleted by the default rule with a Backup copy
        message_id = smtp_send(smtp_port, mail("a detect", EICAR))

        def timeline() -> list[dict[str, Any]] | None:
            try:
                view = projected(f"/messages/{message_id}")
            except OSError:
                return None
            return list(view["events"]) if view.get("outcome") else None

        events: list[dict[str, Any]] = wait_for(timeline, 60, "the message's outcome")

        # When its lines are gathered from every process's log, once the timeline has settled
        # (the Backup ledger's `backup.retained` may follow the terminal event)
        def settled() -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]] | None:
            found = mail_log_lines(state / "logs", message_id)
            now = timeline()
            if now is None or "backup.retained" not in {e["type"] for e in now}:
                return None
            ids = sorted(e["event_id"] for e in now)
            return (found, now) if sorted(r["event_id"] for _, r in found) == ids else None

        settled_at = wait_for(settled, 30, "a line for every event of the settled timeline")
        lines, events = settled_at
    finally:
        up.stop()

    # Then there is one line per event of the timeline, none more
    assert sorted(r["event_id"] for _, r in lines) == sorted(e["event_id"] for e in events)
    # ... each in the log of the stage that wrote the event, naming it, message id first
    timeline_by_id = {e["event_id"]: e for e in events}
    for log_name, record in lines:
        event = timeline_by_id[record["event_id"]]
        assert record["event"] == event["type"]
        assert record["stage"] == event["producer"].split("/")[0]
        assert log_name == LOG_OF_STAGE[record["stage"]], (log_name, record)
        assert record["message"].split()[0] == message_id
        assert record["level"] == "INFO"
        # written after the event was made (the record's time is to the millisecond)
        assert instant(record["time"]) >= instant(record["occurred_at"]) - MILLISECOND
    # ... and in the timeline's order (by the event's instant, then its lifecycle step)
    ordered = sorted((r for _, r in lines),
                     key=lambda r: (r["occurred_at"], RANK[r["event"]], r["event_id"]))
    assert [r["event"] for r in ordered] == [e["type"] for e in events]
    told = {r["event"]: r["message"].split(" ", 1)[1] for r in ordered}
    assert told["mail.received"].startswith("ingest from=<alice@example.org> "
                                            "to=<bob@example.net> nrcpt=1 size=")
    assert told["scan.verdict"].startswith("kata verdict=detected detects=")
    assert told["action.decided"] == "action=delete backup=yes reason=detected skipped=no"
    assert told["message.discarded"] == "discarded reason=kata_delete"
    assert "a detect" not in json.dumps([r for _, r in lines])  # the Subject stays out
