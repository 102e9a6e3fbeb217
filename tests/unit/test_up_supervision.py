"""`katagate up`'s supervision without processes: the restart policy (backoff, its reset, giving
up within the window) with the time given, the stop tiers and how long `down` waits, the
[up] settings, and which sensor `--accept-sensor` accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from katagate.config_sections import UpSettings, up_sections
from katagate.kata_emulator.store import Sensor
from katagate.restart_policy import (
    ChildRecord,
    GiveUp,
    Restart,
    RestartPolicy,
    on_failure,
)
from katagate.stop_tiers import (
    BROKER_STOP_S,
    INGEST_COMMIT_S,
    MARGIN_S,
    drain_s,
    longest_stop_s,
    plan,
    plan_for,
)
from katagate.up_sensor import to_accept
from tests.unit.test_deploy_files import CATALOGUE


def failures_at(policy: RestartPolicy, times: list[tuple[float, float]]) -> list[object]:
    """Each (started_at, died_at) in turn through the policy; what it said each time."""
    record, said = ChildRecord(), []
    for started, died in times:
        decision = on_failure(policy, record, started, died)
        said.append(decision)
        if isinstance(decision, Restart):
            record = decision.record
    return said


def test_a_child_dying_at_once_waits_1_2_4_8_16_then_30_s():
    policy = RestartPolicy(limit=100, window_s=10_000)
    times, now = [], 0.0
    for _ in range(8):
        times.append((now, now + 1))  # up one second each time
        now += 100
    said = failures_at(policy, times)
    assert [d.after_s for d in said if isinstance(d, Restart)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_backoff_starts_again_at_1_s_after_a_minute_up():
    policy = RestartPolicy(limit=100, window_s=10_000)
    said = failures_at(policy, [(0, 1), (2, 3), (5, 6), (10, 70), (71, 72)])
    assert [d.after_s for d in said if isinstance(d, Restart)] == [1, 2, 4, 1, 2]


def test_more_than_the_limit_within_the_window_gives_up_naming_the_count():
    policy = RestartPolicy(limit=5, window_s=300)
    said = failures_at(policy, [(t, t + 1) for t in (0, 10, 20, 30, 40, 50)])
    assert all(isinstance(d, Restart) for d in said[:5])
    assert said[5] == GiveUp(6)


def test_failures_older_than_the_window_do_not_count():
    policy = RestartPolicy(limit=2, window_s=100)
    said = failures_at(policy, [(0, 1), (50, 51), (110, 120), (125, 130)])
    # At 120 the failure at 1 is out of the window: 51 and 120 are not more than 2.
    assert all(isinstance(d, Restart) for d in said[:3])
    assert said[3] == GiveUp(3)  # 51, 120, 130


def test_a_limit_of_zero_stops_at_the_first_failure():
    assert on_failure(RestartPolicy(limit=0), ChildRecord(), 0, 5) == GiveUp(1)


def test_the_tiers_stop_ingest_then_the_stages_then_the_demo_peers():
    tiers = plan(ingest_drain_s=30, decider_drain_s=45)
    assert [t.names for t in tiers] == [
        ("ingest",), ("scanner", "decider", "projector", "console", "audit"),
        ("sink", "kata-emulator")]
    assert [t.timeout_s for t in tiers] == [30 + INGEST_COMMIT_S + MARGIN_S, 45 + MARGIN_S, 10]


def test_the_drain_times_come_from_the_environment_over_the_file_else_30_s():
    document = {"ingest": {"drain_timeout_s": 5}, "decider": {}}
    assert drain_s(document, "ingest", {}) == 5
    assert drain_s(document, "ingest", {"KATAGATE_INGEST_DRAIN_TIMEOUT_S": "12"}) == 12
    assert drain_s(document, "decider", {}) == 30
    assert drain_s({}, "decider", {"KATAGATE_DECIDER_DRAIN_TIMEOUT_S": "soon"}) == 30
    tiers = plan_for(document, {"KATAGATE_DECIDER_DRAIN_TIMEOUT_S": "60"})
    assert [t.timeout_s for t in tiers] == [5 + INGEST_COMMIT_S + MARGIN_S, 60 + MARGIN_S, 10]


def test_down_waits_for_every_tier_and_the_broker():
    tiers = plan(30, 30)
    assert longest_stop_s(tiers) == 50 + 40 + 10 + BROKER_STOP_S + MARGIN_S


def test_the_up_section_defaults_and_ranges(monkeypatch):
    assert (UpSettings().restart_limit, UpSettings().restart_window_s) == (5, 300)
    monkeypatch.setenv("KATAGATE_UP_RESTART_LIMIT", "2")
    assert up_sections({})["up"] == {"restart_limit": 2}
    monkeypatch.setenv("KATAGATE_UP_RESTART_WINDOW_S", "0")
    with pytest.raises(ValidationError, match="restart_window_s"):
        up_sections({})


@pytest.mark.parametrize("bad", [{"restart_limit": -1}, {"restart_limit": 1001},
                                 {"restart_window_s": 0}, {"restart_window_s": 86401}])
def test_out_of_range_up_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        UpSettings(**bad)


def test_the_restart_counter_is_in_the_catalogue():
    assert CATALOGUE["katagate_up_child_restarts_total"].kind == "counter"
    assert set(CATALOGUE["katagate_up_child_restarts_total"].labels) == {"child"}


def sensor(sensor_id: str, status: str) -> Sensor:
    return Sensor(sensor_id, status, "127.0.0.1", "fp-" + sensor_id, "", 0.0, 0.0, None)


STATE = Path("/state/kata")


def test_our_accepted_sensor_ends_the_wait_at_once_with_its_key():
    assert to_accept("ours", [sensor("ours", "accepted")], STATE) == (
        [], "sensor ours already accepted (key fp-ours)")


def test_our_pending_sensor_is_accepted_and_no_other():
    listed = [sensor("other", "pending"), sensor("ours", "pending")]
    assert to_accept("ours", listed, STATE) == ([listed[1]], None)


def test_our_rejected_sensor_is_said_and_left_rejected():
    accept, said = to_accept("ours", [sensor("ours", "rejected")], STATE)
    assert accept == []
    assert said is not None
    assert said.startswith("sensor ours was rejected on the emulator (key fp-ours); not accepting")
    assert "katagate kata-emulator sensors accept --state /state/kata ours" in said


def test_a_sensor_not_listed_yet_is_waited_for():
    assert to_accept("ours", [sensor("other", "accepted")], STATE) == ([], None)
    assert to_accept(None, [], STATE) == ([], None)


def test_before_the_scanner_made_its_id_every_pending_sensor_is_accepted():
    listed = [sensor("a", "pending"), sensor("b", "accepted")]
    assert to_accept(None, listed, STATE) == ([listed[0]], None)
