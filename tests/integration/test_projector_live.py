"""The projector on a real broker: live views over HTTP equal the audit replay byte for byte,
after a restart from the snapshot (which reads only what is new) and after a rebuild. Reads
send a token made as `katagate projector token create` makes one."""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from katagate import projector_cmd
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.projector.guard import token_file
from katagate.projector.live import LiveProjection
from katagate.projector.replay import replay, timelines_jsonl
from katagate.projector.run import run_projector
from katagate.projector.settings import ProjectorSettings
from katagate.projector.snapshot import snapshot_path
from katagate.projector.views import Projections, evolve
from katagate.schemas import decode_event
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import wait_for
from tests.unit.test_projector_flows import Routed, all_flows, message_flow

pytestmark = pytest.mark.kafka
VIEWS = ("connection", "quarantine", "counters")


def publish_routed(kafka: KafkaSettings, routed: Routed, per_transaction: int = 60) -> None:
    names = TopicNames(kafka.topic_prefix)
    topics = {"mail": names.mail, "quarantine": names.quarantine, "control": names.control}
    producer = TransactionalProducer(kafka, f"test-projector-{uuid.uuid4().hex[:8]}")
    try:
        for start in range(0, len(routed), per_transaction):
            producer.begin()
            producer.produce(Outgoing.event(topics[t], e)
                             for t, e in routed[start:start + per_transaction])
            producer.commit()
    finally:
        producer.close()


# The read token of each running projector, by its address.
READ_TOKENS: dict[tuple[str, int], str] = {}


def get(live: LiveProjection, path: str, token: str | None = "") -> tuple[int, bytes]:
    """GET with the projector's read token (or `token`; None: none at all)."""
    status, _headers, body = request(live, path, token)
    return status, body


def request(live: LiveProjection, path: str, token: str | None = "",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    assert live.address is not None
    host, port = live.address
    asked = urllib.request.Request(f"http://{host}:{port}{path}", headers=headers or {})
    token = READ_TOKENS[live.address] if token == "" else token
    if token is not None:
        asked.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(asked, timeout=10) as reply:  # noqa: S310 - http only
            return int(reply.status), dict(reply.headers), bytes(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@contextmanager
def running(kafka: KafkaSettings, state_dir: Path, rebuild: bool = False,
            **overrides: Any) -> Iterator[LiveProjection]:
    settings = ProjectorSettings(**{"port": 0, "state_dir": state_dir, "rebuild": rebuild,
                                    "snapshot_interval_s": 0.3, **overrides})
    holder = state_dir / "test-read-token"
    token_file(settings.token_path).ensure_in_file("tests", holder, "now")
    stop = threading.Event()
    started: list[LiveProjection] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            run_projector(kafka, settings, stop, ready=started.append)
        except BaseException as exc:
            failed.append(exc)
            raise

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_for(lambda: started or failed, 30, "the projector to listen")
    assert not failed, failed
    live = started[0]
    assert live.address is not None
    READ_TOKENS[live.address] = holder.read_text().strip()
    try:
        yield live
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert not failed, failed


def caught_up(live: LiveProjection, records: int) -> None:
    wait_for(lambda: live.records_read >= records and live.caught_up, 30,
             f"{records} records read (at {live.records_read})")
    assert live.records_read == records


def assert_live_equals_replay(live: LiveProjection, kafka: KafkaSettings) -> None:
    replayed = replay(kafka).projections
    for name in VIEWS:
        status, body = get(live, f"/state/{name}")
        assert status == 200
        assert body == replayed.document(name), name
    served = b"".join(get(live, f"/messages/{m}")[1] for m in replayed.message_ids())
    assert served == timelines_jsonl(replayed)


def run_cli(monkeypatch: pytest.MonkeyPatch, kafka: KafkaSettings, *argv: str) -> int:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", kafka.topic_prefix)
    parser = argparse.ArgumentParser()
    projector_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["projector", *argv])
    code: int = args.run(args)
    return code


def test_live_views_equal_the_replay_after_resume_and_rebuild(
        kafka_settings: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a few hundred events of 48 messages, half of them in the log before the start
    routed = all_flows(48)
    half = len(routed) // 2
    publish_routed(kafka_settings, routed[:half])
    state = tmp_path / "state"
    with running(kafka_settings, state) as live:
        # When the rest arrives while the projector runs
        publish_routed(kafka_settings, routed[half:])
        caught_up(live, len(routed))
        # Then each view over HTTP equals the replay (the command's files) byte for byte
        out = tmp_path / "replay"
        assert run_cli(monkeypatch, kafka_settings, "replay", "--out", str(out)) == 0
        for name in VIEWS:
            assert get(live, f"/state/{name}")[1] == (out / f"{name}.json").read_bytes()
        lines = (out / "timelines.jsonl").read_bytes().splitlines(keepends=True)
        assert len(lines) == 48
        for line in lines:
            message_id = json.loads(line)["message_id"]
            assert get(live, f"/messages/{message_id}") == (200, line)
        quarantine = json.loads(get(live, "/state/quarantine")[1])
        assert quarantine["messages_in_use"] == 0  # every message released
        assert quarantine["limit_messages"] == 100
        counters = json.loads(get(live, "/state/counters")[1])
        assert counters["messages"] == {"received": 48}
        assert counters["quarantine"]["denied"] == 8
        assert "events/s" in capsys.readouterr().err
    assert snapshot_path(state, kafka_settings.topic_prefix).exists()

    # Given the projector stopped, and more mail in the meantime
    extra = [pair for i in range(48, 54) for pair in message_flow(i)]
    publish_routed(kafka_settings, extra)
    # When it restarts from its snapshot
    with running(kafka_settings, state) as live:
        caught_up(live, len(extra))
        # Then it read only the new records, and still equals the replay
        assert live.resumed_from_snapshot
        assert_live_equals_replay(live, kafka_settings)

    # And a rebuild from offset 0 reads everything and equals it too
    with running(kafka_settings, state, rebuild=True) as live:
        caught_up(live, len(routed) + len(extra))
        assert not live.resumed_from_snapshot
        assert_live_equals_replay(live, kafka_settings)


def test_http_pages_filters_and_names_what_was_wrong(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    routed = all_flows(18)
    publish_routed(kafka_settings, routed)
    with running(kafka_settings, tmp_path) as live:
        caught_up(live, len(routed))
        # Paging: every message once, in id order, by the cursor
        seen: list[str] = []
        after = ""
        while True:
            status, body = get(live, f"/messages?limit=5{after}")
            assert status == 200
            page = json.loads(body)
            seen += [m["message_id"] for m in page["messages"]]
            if page["next"] is None:
                break
            after = f"&after={page['next']}"
        assert seen == [f"MSG{i:08d}" for i in range(18)]
        # Filters
        rejected = json.loads(get(live, "/messages?action=reject")[1])["messages"]
        assert [m["message_id"] for m in rejected] == ["MSG00000002", "MSG00000008",
                                                       "MSG00000014"]
        assert all(m["outcome"] == "ndr_sent" for m in rejected)
        timeouts = json.loads(get(live, "/messages?reason=timeout&state=response_timeout")[1])
        assert len(timeouts["messages"]) == 3
        # An unknown message id: 404 naming it
        status, body = get(live, "/messages/MSG99999999")
        assert status == 404
        assert json.loads(body) == {"error": "unknown message id MSG99999999",
                                    "message_id": "MSG99999999"}
        # A bad limit: 400 naming the parameter and its range
        status, body = get(live, "/messages?limit=0")
        assert status == 400
        error = json.loads(body)
        assert error["parameter"] == "limit"
        assert error["allowed"] == "an integer in 1..1000"
        status, body = get(live, "/messages?state=clean")
        assert (status, json.loads(body)["parameter"]) == (400, "state")
        assert get(live, "/nowhere")[0] == 404
        status = json.loads(get(live, "/status")[1])
        assert status["caught_up"] is True
        assert status["records_read"] == len(routed)


def test_replay_as_of_an_offset_or_an_instant_is_the_log_up_to_it(
        kafka_settings: KafkaSettings) -> None:
    # Given two batches of mail, written a moment apart
    first, second = all_flows(12), [p for i in range(12, 24) for p in message_flow(i)]
    publish_routed(kafka_settings, first)
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    publish_routed(kafka_settings, second)
    names = TopicNames(kafka_settings.topic_prefix)
    records = [r for topic in (names.mail, names.quarantine, names.control)
               for r in read_all(kafka_settings, topic)]

    def fold(keep: list[bool]) -> Projections:
        return reduce(evolve, (decode_event(r.value or b"")
                              for r, k in zip(records, keep, strict=True) if k), Projections())

    # When replayed as of the instant between them, Then it is the first batch only
    as_of = replay(kafka_settings, as_of=between).projections
    expected = fold([r.timestamp_ms <= between.timestamp() * 1000 for r in records])
    assert len(list(as_of.message_ids())) == 12
    # When replayed up to offset 20 of each partition, Then it is the records before it
    until = replay(kafka_settings, until_offset=20).projections
    expected_until = fold([r.offset < 20 for r in records])
    for name in VIEWS:
        assert as_of.document(name) == expected.document(name)
        assert until.document(name) == expected_until.document(name)
    assert timelines_jsonl(until) == timelines_jsonl(expected_until)
