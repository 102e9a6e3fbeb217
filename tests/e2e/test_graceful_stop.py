"""A graceful stop delivers nothing twice: `katagate up` (the session's broker, a topic
namespace of its own, the demo sink as the next hop) accepts over 1,000 messages; `katagate
down` while the decider is still delivering them; `katagate up` again on the same state folder;
then every accepted message is at the sink exactly once, counted by Message-ID as
`python -m bench.restarts` counts (bench/sink_count.py), which measures the same over many
rounds and crashes. Twice over: a stop breaks off the deliveries in flight at that instant
only, and a double shows in some stops, not all."""

from __future__ import annotations

import time

import pytest

from bench.restarts.gateway import Gateway
from bench.restarts.rounds import wait_arrived
from bench.sink_count import SinkArrivals, tally
from bench.smtp_load import send_load
from tests.conftest import ensure_namespace
from tests.e2e.up_env import up_env

pytestmark = pytest.mark.kafka

MESSAGES = 1200
AT_LEAST = 1000
STOPS = 2


def test_a_stop_while_the_backlog_is_delivered_then_a_start_delivers_each_message_once(
    kafka_bootstrap, tmp_path
):
    kafka = ensure_namespace(kafka_bootstrap)
    # A delivery the stop broke off is retried after 1 s, not the default 30 s.
    env = up_env(kafka, tmp_path, KATAGATE_DECIDER_RETRY_FIRST_S="1")
    gateway = Gateway(tmp_path, env)
    arrivals = SinkArrivals(gateway.sink_dir)
    stops = []
    try:
        gateway.start()
        for _ in range(STOPS):
            sent = send_load(gateway.ports["smtp"], MESSAGES, 4096, 4)
            accepted = set(sent.accepted_at)
            assert len(accepted) >= AT_LEAST, f"{sent.refused} of {MESSAGES} refused"
            stop_at = time.time()  # right after the last 250: the decider is busy
            gateway.down()
            arrivals.refresh()
            by_down = arrivals.holds(accepted)
            gateway.start()
            wait_arrived(arrivals, accepted, 120)
            stops.append((accepted, stop_at, by_down))
        for accepted, stop_at, by_down in stops:
            figures = tally(accepted, arrivals.copies, stop_at=stop_at)
            print(f"{figures}; by the end of `katagate down` {by_down}; up starts "
                  f"{gateway.starts_s} s")  # with -s: what one run measured
            # Otherwise the stop interrupted nothing and the test proves nothing.
            assert figures["pending_at_stop"] > 0, figures
            twice = sorted(m for m in accepted if len(arrivals.copies.get(m, ())) > 1)
            copies_s = {m: [round(t - stop_at, 2) for t in arrivals.copies[m]]
                        for m in twice[:10]}
            assert (figures["lost"], figures["duplicated"]) == (0, 0), (
                f"{figures}; {by_down} had arrived when `katagate down` was done; arrived "
                f"twice or more (each copy's seconds from the stop): {copies_s}; up said: "
                f"{gateway.said[-20:]}")
    finally:
        gateway.close()
