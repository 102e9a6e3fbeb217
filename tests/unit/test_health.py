"""What /healthz and /readyz answer (eventlog/health.py), pure: a stuck loop, a projector
rebuilding, a scanner not connected, a part starting, and everything good; with a clock of
our own."""

from __future__ import annotations

from katagate.eventlog.health import Condition, Health, Snapshot, answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_given_every_loop_polled_and_every_part_ready_then_both_probes_are_200():
    snapshot = Snapshot(30.0, {"decider": (995.0, 0.0), "apply": (999.5, 0.0)},
                        {"decider": Condition(True, "ready"), "apply": Condition(True, "ready"),
                         "admission": Condition(True, "standing_by")})
    for probe in ("healthz", "readyz"):
        status, body = answer(probe, snapshot, 1000.0)
        assert (status, body["status"]) == (200, "ok")
    assert answer("healthz", snapshot, 1000.0)[1]["checks"]["decider"] == {
        "ok": True, "polled_s_ago": 5.0}


def test_given_a_loop_silent_past_health_stall_s_then_healthz_is_503_naming_it():
    # Given apply's loop last polled 31 s ago, the decisions loop a moment ago
    snapshot = Snapshot(30.0, {"decider": (999.9, 0.0), "apply": (969.0, 0.0)},
                        {"apply": Condition(True, "ready")})
    # When asked
    status, body = answer("healthz", snapshot, 1000.0)
    # Then 503, stalled, and the loop named with how long it has been silent
    assert status == 503
    assert body["status"] == "stalled"
    assert body["checks"]["apply"] == {"ok": False, "polled_s_ago": 31.0, "state": "stalled",
                                       "detail": "no poll for 31.0 s (health_stall_s 30)"}
    assert body["checks"]["decider"]["ok"] is True
    # And it is not ready either, whatever it said of itself before it stuck
    status, body = answer("readyz", snapshot, 1000.0)
    assert (status, body["status"], body["checks"]["apply"]["state"]) == (503, "stalled",
                                                                          "stalled")


def test_given_a_loop_in_a_bounded_blocking_call_then_it_is_not_stalled_until_its_bound():
    # Given the scanner's lifecycle announced a Central Node request of up to 30 s
    snapshot = Snapshot(30.0, {"kata-lifecycle": (940.0, 30.0)}, {})
    # Then 60 s later it still lives; 61 s later it is stalled
    assert answer("healthz", snapshot, 1000.0)[0] == 200
    assert answer("healthz", snapshot, 1001.0)[0] == 503


def test_given_the_projector_rebuilding_then_it_lives_but_is_not_ready_with_its_progress():
    snapshot = Snapshot(30.0, {"projector": (999.9, 0.0)}, {
        "projector": Condition(False, "rebuilding", "1200 of 5000 offsets read", 0.24)})
    assert answer("healthz", snapshot, 1000.0)[0] == 200
    status, body = answer("readyz", snapshot, 1000.0)
    assert status == 503
    assert body["status"] == "rebuilding"
    assert body["checks"]["projector"] == {"ok": False, "polled_s_ago": 0.1,
                                           "state": "rebuilding",
                                           "detail": "1200 of 5000 offsets read",
                                           "progress": 0.24}


def test_given_the_central_node_not_connected_then_the_scanner_is_not_ready():
    snapshot = Snapshot(30.0, {"scanner": (999.0, 0.0)}, {
        "scanner": Condition(True, "ready"),
        "central_node": Condition(False, "unreachable", "connection refused")})
    assert answer("healthz", snapshot, 1000.0)[0] == 200
    status, body = answer("readyz", snapshot, 1000.0)
    assert (status, body["status"]) == (503, "unreachable")
    # Deliberately not configured is ready
    snapshot = Snapshot(30.0, {"scanner": (999.0, 0.0)}, {
        "scanner": Condition(True, "ready"), "central_node": Condition(True, "not_configured")})
    assert answer("readyz", snapshot, 1000.0)[0] == 200


def test_given_a_part_just_made_then_it_is_starting_and_has_health_stall_s_to_beat():
    clock = Clock()
    health = Health(stall_s=10.0, clock=clock)
    # Given no part yet (the listener comes first): alive, not ready
    assert health.answer("healthz") == (200, {"status": "ok", "checks": {}})
    assert health.answer("readyz") == (503, {"status": "starting", "checks": {}})
    # Given a loop and a condition registered, neither done yet
    loop = health.part("decider")
    health.part("smtp", loop=False)
    # Then the process lives but is not ready
    assert health.answer("healthz")[0] == 200
    status, body = health.answer("readyz")
    assert (status, body["status"]) == (503, "starting")
    # When the loop restores and the listener binds
    loop.not_ready("restoring", "2000 records read")
    assert health.answer("readyz")[1]["checks"]["decider"]["state"] == "restoring"
    loop.ready()
    health.set("smtp", Condition(True, "listening"))
    assert health.answer("readyz")[0] == 200
    # And a loop that never beats again is stalled past 10 s, not before
    clock.now += 10
    assert health.answer("healthz")[0] == 200
    clock.now += 0.5
    assert health.answer("healthz")[1]["checks"]["decider"]["state"] == "stalled"
    loop.beat()
    assert health.answer("healthz")[0] == 200


def test_given_a_projector_fold_then_it_is_ready_once_it_reached_the_ends_seen_at_start():
    from katagate.projector.live import catch_up

    a, b = ("t.mail", 0), ("t.mail", 1)
    start, target = {a: 0, b: 0}, {a: 3000, b: 1000}
    # Rebuilding from offset 0: not ready, with how far it is
    reached = catch_up(start, target, {a: 1000, b: 0}, caught_up=False)
    assert (reached.ok, reached.state, reached.detail) == (False, "rebuilding",
                                                           "1000 of 4000 offsets read")
    assert reached.progress == 0.25
    # From a snapshot: catching up
    assert catch_up({a: 2000, b: 0}, target, {a: 2500, b: 0}, False).state == "catching_up"
    # At the ends seen at start (later records are lag, not readiness), or at every partition's
    # end (a transaction marker last is an offset no record reaches): ready
    assert catch_up(start, target, {a: 3000, b: 1000}, False).ok
    assert catch_up(start, target, {a: 2999, b: 999}, True).ok
    # Ends unknown at start: only reading every partition to its end says so
    assert catch_up(start, {}, {a: 5000, b: 5000}, False).state == "rebuilding"
    assert catch_up(start, {}, {a: 5000, b: 5000}, True).ok


def test_given_the_scanner_then_it_is_ready_in_its_group_folded_and_with_a_usable_central_node():
    from katagate.scanner.connection import ConnectionView
    from katagate.scanner.readiness import central_node_condition, partitions_condition

    assert partitions_condition(False, 0, 0).state == "joining"
    assert partitions_condition(True, 3, 1) == Condition(
        False, "catching_up", "1 of 3 partitions still folding to their end")
    assert partitions_condition(True, 0, 0).ok  # a member in reserve
    assert partitions_condition(True, 3, 0).ok
    for state, ok in (("connected", True), ("not_configured", True), ("unreachable", False),
                      ("awaiting_confirmation", False), ("certificate_mismatch", False)):
        assert central_node_condition(ConnectionView(state=state)).ok is ok, state


def test_given_the_central_node_unreachable_then_readyz_names_its_state_but_not_the_node():
    from katagate.scanner.connection import ConnectionView
    from katagate.scanner.readiness import central_node_condition

    # Given the connection's detail naming the node, its key and the transport's error
    view = ConnectionView(state="certificate_mismatch", detail=(
        "10.20.30.40:443 presented sha256:ab12cd34, not the pinned key; "
        "[SSL: CERTIFICATE_VERIFY_FAILED]"))
    condition = central_node_condition(view)
    # Then the unauthenticated probe says the state, and where to read the rest
    assert condition == Condition(False, "certificate_mismatch",
                                  "details: katagate kata state")


def test_given_each_stage_then_health_stall_s_defaults_to_30_and_is_refused_outside_5_to_3600():
    import pytest
    from pydantic import ValidationError

    from katagate.audit.settings import AuditSettings
    from katagate.console.settings import ConsoleSettings
    from katagate.decider.settings import DeciderSettings
    from katagate.ingest.settings import IngestSettings
    from katagate.projector.settings import ProjectorSettings
    from katagate.scanner.settings import ScannerSettings

    for stage in (IngestSettings, ScannerSettings, DeciderSettings, ProjectorSettings,
                  ConsoleSettings, AuditSettings):
        assert stage().health_stall_s == 30, stage
        assert stage(health_stall_s=5).health_stall_s == 5
        for wrong in (4.9, 3601):
            with pytest.raises(ValidationError, match="health_stall_s"):
                stage(health_stall_s=wrong)
