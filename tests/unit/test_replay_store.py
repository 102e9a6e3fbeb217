"""The replay's scratch store, built without search: what it renders is what a searchable
store renders, and it refuses a search rather than answer one without its indexes."""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import pytest

from katagate.projector.search_filters import parse
from katagate.projector.store import NotSearchable, TimelineStore
from katagate.projector.views import Projections, evolve
from tests.unit.test_projector_flows import ALL_SCENARIOS, all_flows

MESSAGES = len(ALL_SCENARIOS) * 2


def folded(store: TimelineStore) -> Projections:
    return reduce(evolve, (e for _t, e in all_flows(MESSAGES, ALL_SCENARIOS)),
                  Projections(store=store))


def test_given_every_scenario_when_folded_without_search_then_rows_and_timelines_are_the_same(
        ) -> None:
    searchable, scratch = folded(TimelineStore()), folded(TimelineStore(searchable=False))
    ids = list(searchable.message_ids())
    assert len(ids) == MESSAGES
    assert list(scratch.message_ids()) == ids
    for message_id in ids:
        assert scratch.message(message_id) == searchable.message(message_id)
        assert scratch.summary(message_id) == searchable.summary(message_id)
    for filters in ({}, {"action": "delete"}, {"state": "detect"}):
        listed = searchable.listing(None, MESSAGES, filters)
        assert listed[0]  # each filter selects something
        assert scratch.listing(None, MESSAGES, filters) == listed
    # The search tables are not there at all (nothing to keep up)
    tables = {r[0] for r in scratch.store._db.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    assert "recipients" not in tables
    assert not any(t.startswith("messages_") for t in tables)
    assert "recipients" in {r[0] for r in searchable.store._db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_given_a_store_without_search_when_searched_then_it_refuses() -> None:
    searchable, scratch = folded(TimelineStore()), folded(TimelineStore(searchable=False))
    assert searchable.search(parse("", "search"), "search")["messages"]
    with pytest.raises(NotSearchable, match="without its search indexes"):
        scratch.search(parse("", "search"), "search")


def test_a_store_on_a_file_is_always_searchable(tmp_path: Path) -> None:
    # A file is reopened later (searchable) and would lack what was written meanwhile
    with pytest.raises(ValueError, match="scratch"):
        TimelineStore(tmp_path / "store.sqlite", searchable=False)
