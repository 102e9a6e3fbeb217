"""A fault schedule under a steady load, as a nemesis does: one fault at a time on the
Central Node (and the link to it) and on the next hop (and the link to it), each healed
before the next. Every fault here is one a gateway meets in production; afterwards every
message accepted with 250 has exactly one terminal event, no slot is held, nothing is
dead-lettered, and every accepted message reached the next hop.

Bounded in CI (about a minute of faults); `KATAGATE_FAULT_SOAK=1` runs each fault longer, with
more mail, in a seeded random order."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import SOAK
from tests.faults.harness import Rig, assert_no_secrets
from tests.faults.proxy import FaultProxy
from tests.faults.senders import Senders
from tests.integration.kata_harness import Emulator

pytestmark = pytest.mark.kafka

HOLD_S = 12.0 if SOAK else 2.2  # how long each fault lasts
HEAL_S = 4.0 if SOAK else 0.8  # quiet time between faults


def emulator_faults(emulator: Emulator, *settings: str) -> Callable[[], None]:
    return lambda: emulator.cli("faults", "set", *settings)


def resets(proxy: FaultProxy, times: int) -> Callable[[], None]:
    def apply() -> None:
        for _ in range(times):
            proxy.reset()
            time.sleep(HOLD_S / times)
    return apply


def test_the_central_node_and_the_next_hop_failing_one_way_after_another_lose_nothing(
    kafka_settings, tmp_path
):
    rig = Rig(
        kafka_settings, tmp_path,
        # Short bounds, so that a stalled or half-open link is noticed within the fault.
        scanner_env={"KATAGATE_SCANNER_REQUEST_TIMEOUT_S": "2"},
        decider_env={"KATAGATE_DECIDER_SMTP_TIMEOUT_S": "2"},
        sink_args=("--fail-rate", "0.1", "--seed", "1129"),  # 451s all along: retried
        projector=True,
    )
    kata = FaultProxy(rig.emulator.port).start()
    hop = FaultProxy(rig.sink.port).start()
    rig.kata_port = kata.port
    rig.stages["decider"].env["KATAGATE_DECIDER_NEXT_HOP_PORT"] = str(hop.port)
    emulator = rig.emulator
    clear = emulator_faults(emulator, "--error-rate", "0", "--malformed-rate", "0",
                            "--concurrency-limit", "100", "--latency", "0")
    schedule: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
        ("central node slow", emulator_faults(emulator, "--latency", "uniform:1:3"), clear),
        ("central node 500s", emulator_faults(emulator, "--error-rate", "0.5"), clear),
        ("central node garbage", emulator_faults(emulator, "--malformed-rate", "0.5"), clear),
        ("central node 429 storm", emulator_faults(emulator, "--concurrency-limit", "1"), clear),
        ("central node link latency", lambda: kata.latency(0.5), kata.heal),
        ("central node link resets", resets(kata, 3), kata.heal),
        ("central node link stalled", kata.stall, kata.heal),
        ("central node link half-open", kata.half_open, kata.heal),
        ("central node down", kata.refuse, kata.heal),
        ("next hop link latency", lambda: hop.latency(0.5), hop.heal),
        ("next hop link resets", resets(hop, 3), hop.heal),
        ("next hop link stalled", hop.stall, hop.heal),
        ("next hop link half-open", hop.half_open, hop.heal),
        ("next hop down", hop.refuse, hop.heal),
    ]
    if SOAK:
        random.Random(1129).shuffle(schedule)
    try:
        rig.start()
        # About 20 messages a second, for as long as the schedule lasts.
        senders = Senders(rig.smtp_port, count=4000 if SOAK else 820, pause_s=0.2).start()
        applied = []
        for name, apply, heal in schedule:
            began = time.monotonic()
            apply()
            time.sleep(max(0.0, HOLD_S - (time.monotonic() - began)))
            heal()
            applied.append(name)
            time.sleep(HEAL_S)
        senders.join(timeout_s=600)
        assert len(senders.accepted) == senders.count, "the senders did not finish"
        assert kata.connections > 1, "nothing went through the Central Node's proxy"
        assert hop.connections > 1, "nothing went through the next hop's proxy"
        rig.assert_nothing_lost(senders.accepted)
        rig.assert_projections_equal_replay()
        assert_no_secrets(rig)
        assert applied == [name for name, _, _ in schedule]
    finally:
        rig.stop()
        kata.stop()
        hop.stop()
