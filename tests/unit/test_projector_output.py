"""Canonical JSON, the snapshot file, the HTTP query rules and the replay's outputs — no
broker needed."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from functools import reduce
from pathlib import Path

import pytest

from projector.canonical import canonical_json, document, timestamp
from projector.http import BadRequest, parse_listing
from projector.replay import Progress, Replayed, timelines_csv, timelines_jsonl, write_outputs
from projector.snapshot import encode, load, snapshot_path, write_atomically
from projector.views import Projections, apply
from tests.unit.test_projector_flows import all_flows


def folded(messages: int = 12) -> Projections:
    return reduce(apply, (e for _t, e in all_flows(messages)), Projections())


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
    # When stored as state and restored (what a snapshot does)
    restored = Projections.from_state(json.loads(json.dumps(views.to_state())))
    # Then every view renders the same bytes, and folding on gives the same result
    for name in ("connection", "quarantine", "counters"):
        assert restored.document(name) == views.document(name)
    assert timelines_jsonl(restored) == timelines_jsonl(views)


def test_snapshot_is_written_atomically_and_read_back(tmp_path: Path) -> None:
    views = folded(3)
    positions = {("t.mail", 0): 17, ("t.control", 0): 6}
    path = snapshot_path(tmp_path, "t")
    write_atomically(path, encode(positions, views, "t"))
    assert [p.name for p in tmp_path.iterdir()] == ["t.projection.json"]  # no temp file left
    loaded = load(path, "t")
    assert loaded is not None
    assert loaded.positions == positions
    assert loaded.projections.document("counters") == views.document("counters")


def test_a_snapshot_of_another_namespace_or_garbage_is_ignored(tmp_path: Path) -> None:
    path = snapshot_path(tmp_path, "t")
    write_atomically(path, encode({}, Projections(), "other"))
    assert load(path, "t") is None
    path.write_bytes(b"{not json")
    assert load(path, "t") is None
    assert load(tmp_path / "missing.json", "t") is None


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
