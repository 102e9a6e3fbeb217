"""Canonical JSON, the snapshot store, the HTTP query rules and the replay's outputs — no
broker needed."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from functools import reduce
from pathlib import Path

import pytest

from katagate.projector.canonical import canonical_json, document, timestamp
from katagate.projector.http import BadRequest, parse_listing
from katagate.projector.replay import (
    Progress,
    Replayed,
    timelines_csv,
    timelines_jsonl,
    write_outputs,
)
from katagate.projector.search_filters import parse
from katagate.projector.snapshot import open_snapshot, save, snapshot_path, write_atomically
from katagate.projector.store import TimelineStore
from katagate.projector.views import Projections, evolve
from tests.unit.test_projector_flows import all_flows


def folded(messages: int = 12) -> Projections:
    return reduce(evolve, (e for _t, e in all_flows(messages)), Projections())


def test_canonical_json_sorts_keys_and_has_no_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'
    assert document({"z": {"y": 1, "x": 2}}) == b'{"z":{"x":2,"y":1}}\n'


def test_instants_are_utc_and_fixed_width() -> None:
    # Given the same instant in two zones, and one with microseconds
    paris = datetime(2025, 3, 14, 10, 26, 53, tzinfo=timezone(timedelta(hours=1)))
    utc = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
    # Then they serialise alike, and string order is time order
    assert timestamp(paris) == timestamp(utc) == "2025-03-14T09:26:53.000000Z"
    assert timestamp(utc) < timestamp(utc + timedelta(microseconds=1))
    with pytest.raises(ValueError, match="naive"):
        timestamp(datetime(2025, 1, 1))


def test_views_serialise_identically_after_a_state_round_trip() -> None:
    # Given folded views
    views = folded()
    # When stored as state and restored over the same store (what a snapshot does)
    restored = Projections.from_state(json.loads(json.dumps(views.to_state())), views.store)
    # Then every view renders the same bytes
    for name in ("connection", "quarantine", "counters"):
        assert restored.document(name) == views.document(name)
    assert timelines_jsonl(restored) == timelines_jsonl(views)


def test_a_snapshot_resumes_views_positions_and_timelines(tmp_path: Path) -> None:
    # Given half the log folded and saved with its positions
    routed = all_flows(6)
    half = len(routed) // 2
    path = snapshot_path(tmp_path, "t")
    first = open_snapshot(path, "t")
    assert not first.resumed
    for _t, event in routed[:half]:
        evolve(first.projections, event)
    save(first.projections, {("t.mail", 0): half}, "t")
    first.projections.close()
    # When reopened and the rest folded on
    again = open_snapshot(path, "t")
    assert again.resumed
    assert again.positions == {("t.mail", 0): half}
    for _t, event in routed[half:]:
        evolve(again.projections, event)
    # Then it is what folding everything at once gives
    whole = folded(6)
    for name in ("connection", "quarantine", "counters"):
        assert again.projections.document(name) == whole.document(name)
    assert timelines_jsonl(again.projections) == timelines_jsonl(whole)


def test_what_was_folded_after_the_last_save_is_not_in_the_snapshot(tmp_path: Path) -> None:
    # Given a save, then more folded, then a crash (no save, no close)
    routed = all_flows(4)
    path = snapshot_path(tmp_path, "t")
    live = open_snapshot(path, "t")
    evolve(live.projections, routed[0][1])
    save(live.projections, {("t.control", 0): 1}, "t")
    for _t, event in routed[1:]:
        evolve(live.projections, event)
    live.projections.store.flush()  # written into the open transaction, never committed
    # When another process opens the file
    again = open_snapshot(path, "t")
    # Then it holds exactly the saved fold: the positions and the views agree
    assert again.positions == {("t.control", 0): 1}
    assert list(again.projections.message_ids()) == []
    assert again.projections.document("counters") == reduce(
        evolve, [routed[0][1]], Projections()).document("counters")


def test_a_snapshot_of_another_namespace_garbage_or_a_rebuild_starts_empty(
        tmp_path: Path) -> None:
    path = snapshot_path(tmp_path, "t")
    other = open_snapshot(path, "other")
    evolve(other.projections, all_flows(1)[-1][1])
    save(other.projections, {("t.mail", 0): 9}, "other")
    other.projections.close()
    fresh = open_snapshot(path, "t")
    assert not fresh.resumed
    assert fresh.positions == {}
    assert list(fresh.projections.message_ids()) == []
    fresh.projections.close()
    path.write_bytes(b"not a database at all" * 100)
    assert not open_snapshot(path, "t").resumed
    good = open_snapshot(path, "t")
    save(good.projections, {("t.mail", 0): 1}, "t")
    assert open_snapshot(path, "t").resumed
    assert not open_snapshot(path, "t", rebuild=True).resumed


def test_a_store_of_the_older_layout_is_rebuilt_from_offset_0(tmp_path: Path) -> None:
    # Given a snapshot written by the projector before the search columns (format 4, the
    # records in the message row, no recipients or subject index)
    path = snapshot_path(tmp_path, "t")
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE messages (message_id TEXT PRIMARY KEY, summary TEXT NOT NULL,
            action TEXT, reason TEXT, verdict TEXT, outcome TEXT, records BLOB NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
        INSERT INTO messages VALUES ('MSG00000000', '[]', NULL, NULL, NULL, NULL, x'');
        INSERT INTO meta VALUES ('format', '4'), ('prefix', 't'), ('positions', '[]');""")
    old.commit()
    old.close()
    # When the projector opens it
    opened = open_snapshot(path, "t")
    # Then it starts empty, from offset 0, and folds and searches in the new layout
    assert not opened.resumed
    assert list(opened.projections.message_ids()) == []
    for _t, event in all_flows(2):
        evolve(opened.projections, event)
    found = opened.projections.search(parse("from=*@example.com", "search"), "search")
    assert found["messages"] == []
    assert len(opened.projections.search(parse("", "search"), "search")["messages"]) == 2
    opened.projections.close()


def test_files_are_written_atomically_from_chunks(tmp_path: Path) -> None:
    write_atomically(tmp_path / "a.jsonl", iter([b"one\n", b"two\n"]))
    assert (tmp_path / "a.jsonl").read_bytes() == b"one\ntwo\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]  # no temp file left


def test_store_listing_filters_and_pages_in_message_id_order() -> None:
    views = folded(12)
    page, more = views.listing(None, 3, {})
    assert [s["message_id"] for s in page] == ["MSG00000000", "MSG00000001", "MSG00000002"]
    assert more
    rejected, more = views.listing(None, 100, {"action": "reject"})
    assert rejected
    assert not more
    assert all(s["decision"]["action"] == "reject" for s in rejected)
    timeouts, _ = views.listing(None, 100, {"state": "response_timeout"})
    assert {s["scan_state"] for s in timeouts} == {"response_timeout"}
    assert {s["verdict"] for s in timeouts} == {"timed_out"}
    later, _ = views.listing("MSG00000010", 100, {})
    assert [s["message_id"] for s in later] == ["MSG00000011"]


def test_the_store_keeps_few_summaries_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a store that keeps at most 5 summaries in memory
    monkeypatch.setattr("katagate.projector.store.HOT_MESSAGES", 5)
    views = Projections(store=TimelineStore())
    for _t, event in all_flows(40):
        evolve(views, event)
    views.store.flush()
    # Then the rest are on disk, and every summary still reads back whole
    assert len(views.store._hot) <= 5
    assert views.store.count() == 40
    assert all(views.summary(m) == folded(40).summary(m) for m in ("MSG00000000",
                                                                   "MSG00000039"))


@pytest.mark.parametrize(("query", "parameter"), [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"),
    ("limit=-1", "limit"), ("action=quarantine", "action"), ("reason=bad", "reason"),
    ("state=clean", "state"), ("after=not%20an%20id", "after"), ("colour=red", "colour"),
    ("limit=1&limit=2", "limit"),
])
def test_bad_listing_queries_name_the_parameter_and_what_is_allowed(
        query: str, parameter: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_listing(query)
    assert caught.value.body["parameter"] == parameter
    assert caught.value.body["allowed"]
    assert parameter in caught.value.body["error"]


def test_limit_range_is_stated() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_listing("limit=5000")
    assert caught.value.body["allowed"] == "an integer in 1..1000"


def test_a_good_listing_query_is_parsed() -> None:
    assert parse_listing("limit=5&after=MSG00000001&action=deliver&state=error") == {
        "limit": 5, "after": "MSG00000001", "action": "deliver", "state": "error"}
    assert parse_listing("") == {"limit": 100, "after": None}


def test_replay_outputs_are_the_live_documents(tmp_path: Path) -> None:
    views = folded(6)
    result = Replayed(views, {("t.mail", 0): 3}, 3, 0.1)
    write_outputs(result, tmp_path, "jsonl")
    assert (tmp_path / "counters.json").read_bytes() == views.document("counters")
    lines = (tmp_path / "timelines.jsonl").read_bytes().splitlines(keepends=True)
    assert lines[0] == document(views.message("MSG00000000"))
    assert len(lines) == 6
    rows = timelines_csv(views).decode().splitlines()
    assert rows[0] == "message_id,seq,occurred_at,type,producer,event_id,fields"
    assert rows[1].startswith("MSG00000000,0,2025-03-14T09:26:53.000000Z,mail.received,")


def test_progress_is_rewritten_at_most_twice_a_second() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(out, total=100, clock=lambda: now[0])
    for step in range(10):
        now[0] = step * 0.1
        progress.update(step * 10)
    progress.update(100, final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # one after 0.5 s, and the final one
    assert lines[-1].startswith("replay: 100 events")
    assert lines[-1].endswith("0 remaining")


def test_records_added_across_flushes_come_back_byte_for_byte() -> None:
    # Given records holding every byte value, added to one message over three flushes
    store = TimelineStore()
    event = all_flows(1)[-1][1]
    records = [bytes(range(256)), b"\x00" * 7, "é\n".encode() * 3]
    for n, record in enumerate(records):
        store.add("MSG00000000", (n, 0, "0"), event, record)
        store.flush()
    # Then they read back whole and in order
    assert store.records("MSG00000000") == records
    assert store.records("MSG99999999") == []
