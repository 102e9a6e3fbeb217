"""A `kill -9` of each stage in turn under load: `katagate up` restarts it, and every message
that got a `250` reaches the sink, counted by Message-ID as `python -m bench.restarts --mode
kill` counts it over many rounds (bench/restarts/rounds.py). Senders retry like an MTA: a
message whose connection was cut before its answer is sent again, and may arrive once more.

Duplicates: the goal is none. Only apply has an effect outside Kafka (the delivery), so only a
kill of the decider may repeat one: a delivery whose next hop answered `250` just before the
kill, whose outcome was not yet acknowledged (docs/ARCHITECTURE.md, "How a stage runs", and
decider/README.md for that window). Every other stage's kill must deliver nothing twice."""

from __future__ import annotations

import pytest

from bench.restarts.gateway import Gateway
from bench.restarts.rounds import kill
from bench.sink_count import SinkArrivals
from katagate.decider.settings import DeciderSettings
from tests.conftest import ensure_namespace
from tests.e2e.up_env import up_env

pytestmark = pytest.mark.kafka

STAGES = ("ingest", "scanner", "decider", "projector", "console", "audit")
MESSAGES = 150
# A kill of the decider may repeat only the deliveries whose 250 came and whose outcome, written
# ahead, was not yet acknowledged: at most one per delivery in flight (`[decider]
# delivery_concurrency`), not the rest of apply's batch (docs/decisions/0008).
DECIDER_AT_MOST = DeciderSettings.model_fields["delivery_concurrency"].default


def test_each_stage_killed_under_load_is_restarted_and_nothing_is_lost(kafka_bootstrap, tmp_path):
    kafka = ensure_namespace(kafka_bootstrap)
    # A delivery broken off by a kill is retried after 1 s, not the default 30 s.
    env = up_env(kafka, tmp_path, KATAGATE_DECIDER_RETRY_FIRST_S="1")
    gateway = Gateway(tmp_path, env)
    arrivals = SinkArrivals(gateway.sink_dir)
    rounds = []
    try:
        gateway.start()
        for number, stage in enumerate(STAGES):
            figures, _basis = kill(gateway, arrivals, stage, number, MESSAGES, 4, 120)
            print(figures)  # with -s: what each kill cost
            rounds.append(figures)
            assert figures["up_did"] == "restarted", (figures, gateway.said[-10:])
            assert figures["lost"] == 0, figures
        repeated = {r["stage"]: r["duplicated"] for r in rounds}
        assert repeated["decider"] <= DECIDER_AT_MOST, rounds
        assert {s: n for s, n in repeated.items() if s != "decider" and n} == {}, rounds
        assert not any("failed" in line and "stopping katagate" in line
                       for line in gateway.said), gateway.said
    finally:
        gateway.close()
