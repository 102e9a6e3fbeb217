"""The projector's search and listings on a real broker, over HTTP with its read token: the
shapes issue 20's contract names (a row's keys, `next`), every listing equal to the replay of
the log, and a bad filter refused naming the parameter and the allowed values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from katagate.eventlog.settings import KafkaSettings
from katagate.projector.replay import replay
from katagate.projector.search_filters import VERDICTS
from tests.integration.test_projector_live import (
    assert_live_equals_replay,
    caught_up,
    get,
    publish_routed,
    running,
)
from tests.unit.test_projector_flows import ALL_SCENARIOS, all_flows

pytestmark = pytest.mark.kafka
ROW = {"message_id", "received_at", "envelope_from", "recipients", "subject", "size",
       "client_ip", "rule_id", "verdict", "detects", "action", "status", "last_reply",
       "next_attempt_at", "backup"}


def body(live: Any, path: str, status: int = 200) -> Any:
    got, raw = get(live, path)
    assert got == status, raw
    return json.loads(raw)


def test_every_listing_answers_the_contracts_shapes_and_equals_the_replay(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    # Given two messages of every scenario in the log, the Backup's and the queue's too
    routed = all_flows(len(ALL_SCENARIOS) * 2, ALL_SCENARIOS)
    publish_routed(kafka_settings, routed)
    with running(kafka_settings, tmp_path) as live:
        caught_up(live, len(routed))
        # Then every view and timeline, the rows' keys in them, equals the replay's
        assert_live_equals_replay(live, kafka_settings)
        replayed = replay(kafka_settings).projections
        # When searched by a recipient domain and a verdict, a page of 2 at a time
        found: list[dict[str, Any]] = []
        path = "/search/messages?to=*@finance.example.com&verdict=detected&limit=2"
        while path:
            page = body(live, path)
            found += page["messages"]
            path = page["next"] and ("/search/messages?to=*@finance.example.com"
                                     f"&verdict=detected&limit=2&cursor={page['next']}")
        # Then every detected message is found once, newest first, each row in the
        # contract's shape
        assert len(found) == 8
        assert [r["received_at"] for r in found] == sorted(
            (r["received_at"] for r in found), reverse=True)
        assert all(set(r) == ROW and r["verdict"] == "detected" for r in found)
        assert {r["action"] for r in found} == {"deleted", "rejected", "tagged"}
        # And the message's timeline summary gains the row's keys
        timeline = body(live, f"/messages/{found[0]['message_id']}")
        assert set(timeline) >= ROW
        assert {k: timeline[k] for k in ROW} == found[0]

        # The Backup: its copies, one copy, and its usage, as the replay has them
        copies = body(live, "/backup/copies?state=held")["messages"]
        assert len(copies) == 1
        copy = body(live, f"/backup/copies/{copies[0]['message_id']}")
        assert copy == copies[0]
        assert copy["backup"]["state"] == "held"
        assert [r["outcome"] for r in copy["resends"]] == ["delivered", "deferred"]
        assert copy == replayed.backup_copy(copy["message_id"])
        usage = body(live, "/state/backup")
        assert set(usage) == {"bytes_in_use", "copies_in_use", "limit_bytes", "max_age_days"}
        assert usage == replayed.view("backup")
        assert body(live, "/backup/copies/MSG00000000", 404)["message_id"] == "MSG00000000"

        # The delivery queue: the deferred messages with their attempts
        queued = body(live, "/queue/messages")["messages"]
        assert [(q["status"], q["attempts"]) for q in queued] == [("deferred", 2)] * 2
        assert all(q["next_attempt_at"] and q["next_hop"] for q in queued)

        # The KATA Quarantine, sorted: nothing waits once every verdict came
        assert body(live, "/quarantine/messages?sort=size&order=desc") == {
            "messages": [], "next": None}
        assert body(live, "/quarantine/messages?limit=5&after=MSG00000001")["next"] is None

        # A bad value: 400 naming the parameter and the allowed values
        error = body(live, "/search/messages?verdict=clean", 400)
        assert (error["parameter"], error["allowed"]) == ("verdict", list(VERDICTS))
        error = body(live, f"/backup/copies?from={quote('no address')}", 400)
        assert error["parameter"] == "from"
        assert body(live, "/queue/messages?sort=size", 400)["parameter"] == "sort"
