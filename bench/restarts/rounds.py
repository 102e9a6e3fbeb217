"""One round of each mode on a running gateway (bench/restarts/gateway.py), counted at the
sink by Message-ID (bench/sink_count.py). A round leaves the gateway running for the next:
a graceful round's restart is the next round's gateway."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from bench.restarts.gateway import Gateway
from bench.sink_count import SinkArrivals, tally
from bench.smtp_load import send_load
from tests.faults.senders import Senders

SIZE = 4096
SETTLE_S = 2.0  # after the last accepted message arrived, for a late copy of one


def wait_arrived(arrivals: SinkArrivals, accepted: Collection[str], timeout_s: float) -> float:
    """Seconds until every accepted message arrived at least once (or `timeout_s` passed),
    and SETTLE_S more."""
    began = time.monotonic()
    while arrivals.holds(accepted) < len(accepted) and time.monotonic() - began < timeout_s:
        time.sleep(0.5)
        arrivals.refresh()
    waited = time.monotonic() - began
    time.sleep(SETTLE_S)
    arrivals.refresh()
    return round(waited, 1)


def graceful(gateway: Gateway, arrivals: SinkArrivals, number: int, messages: int,
             connections: int, stop_after_s: float, timeout_s: float,
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """`messages` sent; `stop_after_s` after the last 250, `katagate down` while the backlog is
    delivered; `katagate up` again; then until every accepted message arrived. Returns the
    round's figures and what a later re-count needs (`recount`)."""
    sent = send_load(gateway.ports["smtp"], messages, SIZE, connections)
    accepted = set(sent.accepted_at)
    last_250 = max(sent.accepted_at.values(), default=time.time())
    time.sleep(max(0.0, last_250 + stop_after_s - time.time()))
    stop_at = time.time()
    down_s = gateway.down()
    arrivals.refresh()
    by_down = arrivals.holds(accepted)
    restart_s = gateway.start()
    drained_s = wait_arrived(arrivals, accepted, timeout_s)
    basis = {"accepted": accepted, "stop_at": stop_at}
    return {"mode": "graceful", "round": number, "refused": sent.refused,
            "ingest_msgs_per_s": round(sent.per_second, 1),
            **recount(arrivals, basis),
            # arrived_before_stop (in recount): by the sink's clock when `down` was run
            "arrived_by_down_done": by_down, "down_s": down_s, "restart_s": restart_s,
            "drained_after_restart_s": drained_s}, basis


def kill(gateway: Gateway, arrivals: SinkArrivals, stage: str, number: int, messages: int,
         connections: int, timeout_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Senders that retry like an MTA (tests/faults/senders.py) send `messages`; once a third
    are accepted and some delivered, the stage's process is killed (-9) and they go on. If
    `up` stops the whole gateway over it, it is started again (the senders retry meanwhile)."""
    prefix = f"kill-{stage}-{number}"
    senders = Senders(gateway.ports["smtp"], count=messages, threads=connections, pause_s=0.0,
                      body_bytes=SIZE, id_prefix=prefix).start()
    deadline = time.monotonic() + timeout_s
    # Under load: a third accepted, and the decider delivering (the sink holds some).
    while (len(senders.accepted_at) < messages // 3 or not arrivals.holds(
            list(senders.accepted_at))) and time.monotonic() < deadline:
        time.sleep(0.2)
        arrivals.refresh()
    killed_at = time.time()
    outcome = gateway.after_kill(stage, gateway.kill(stage), 20)
    restart_s = gateway.start() if outcome == "gateway stopped" else None
    senders.join(timeout_s)
    accepted = set(senders.accepted_at)
    basis = {"accepted": accepted, "stop_at": killed_at,
             "unanswered": dict(senders.unanswered), "prefix": f"<{prefix}-"}
    drained_s = wait_arrived(arrivals, accepted, timeout_s)
    failed = sum(1 for a in senders.attempts if a.code is None)
    return {"mode": "kill", "stage": stage, "round": number, "up_did": outcome,
            "smtp_attempts_failed": failed, **recount(arrivals, basis),
            "restart_s": restart_s, "drained_s": drained_s}, basis


def recount(arrivals: SinkArrivals, basis: dict[str, Any]) -> dict[str, Any]:
    """A round's tally over the copies the sink holds now (at the end of the run, a copy that
    came after the round was counted shows up)."""
    prefix = basis.get("prefix")
    sent = [m for m in arrivals.copies if m.startswith(prefix)] if prefix else ()
    figures = tally(basis["accepted"], arrivals.copies, sent=sent,
                    unanswered=basis.get("unanswered"), stop_at=basis["stop_at"])
    # For whoever looks for the cause: a few messages that came twice, each copy's time from
    # the stop (or the kill), in seconds.
    twice = sorted(m for m in {*basis["accepted"], *sent} if len(arrivals.copies.get(m, ())) > 1)
    figures["copies_s_from_stop"] = {
        m: [round(t - basis["stop_at"], 2) for t in arrivals.copies[m]] for m in twice[:5]}
    return figures
