"""What ingest's supervisor does with a worker each round (ingest/worker_watch.py), pure."""

from __future__ import annotations

from katagate.ingest.worker_watch import STALLED_FOR, Seen, Watch, judge
from katagate.restart_policy import RestartPolicy

POLICY = RestartPolicy(limit=2, window_s=300)
STALL_S, START_S = 30.0, 70.0
RUNNING_READY = Seen(None, 200, 200, "ok")


def step(watch: Watch, seen: Seen, now: float):  # type: ignore[no-untyped-def]
    return judge(watch, seen, now, POLICY, STALL_S, START_S)


def test_given_a_ready_worker_then_nothing_is_done_and_it_is_ready() -> None:
    taken = step(Watch(0.0), RUNNING_READY, 5.0)
    assert taken.action == "none"
    assert taken.condition.ok
    assert taken.watch.heard
    not_writing = step(taken.watch, Seen(None, 200, 503, "not_writing"), 6.0)
    assert (not_writing.action, not_writing.condition.ok) == ("none", False)
    assert not_writing.condition.state == "not_writing"


def test_given_a_worker_that_exited_then_it_starts_again_after_the_backoff_then_gives_up(
        ) -> None:
    first = step(Watch(0.0), Seen(1), 10.0)
    assert first.action == "none"
    assert first.condition.state == "restarting"
    assert "exited with 1" in first.why
    assert step(first.watch, Seen(1), 10.5).action == "none"  # the backoff: 1 s
    again = step(first.watch, Seen(1), 11.0)
    assert again.action == "start"
    assert again.watch.started_at == 11.0
    second = step(again.watch, Seen(-9), 12.0)
    assert second.watch.restart_at == 14.0  # doubled: it did not stay up
    third = step(step(second.watch, Seen(-9), 14.0).watch, Seen(-9), 15.0)
    assert third.action == "give_up"  # a third failure within the window, limit 2


def test_given_stalled_answers_then_it_is_killed_only_after_twice_health_stall_s() -> None:
    watch = step(Watch(0.0), RUNNING_READY, 1.0).watch
    stalled = Seen(None, 503, 503, "stalled")
    first = step(watch, stalled, 10.0)
    assert (first.action, first.condition.state) == ("none", "stalled")
    # A writer waiting on a broker that does not answer says stalled too: not killed at once
    assert step(first.watch, stalled, 10.0 + STALLED_FOR * STALL_S - 1).action == "none"
    # One good answer between starts the time again
    again = step(step(first.watch, RUNNING_READY, 50.0).watch, stalled, 60.0)
    assert step(again.watch, stalled, 10.0 + STALLED_FOR * STALL_S).action == "none"
    killed = step(first.watch, stalled, 10.0 + STALLED_FOR * STALL_S)
    assert killed.action == "kill"
    assert "has said stalled for 60 s" in killed.why


def test_given_a_listener_that_stops_answering_then_it_is_killed_after_health_stall_s(
        ) -> None:
    watch = step(Watch(0.0), RUNNING_READY, 1.0).watch
    silent = Seen(None, 0, 0, "not answering: timed out")
    taken = step(watch, silent, 100.0)
    assert taken.action == "none"
    assert taken.condition.state == "not_answering"
    assert step(taken.watch, silent, 100.0 + STALL_S).action == "none"
    killed = step(taken.watch, silent, 100.5 + STALL_S)
    assert killed.action == "kill"
    assert "has not answered for 30 s" in killed.why


def test_given_a_worker_starting_then_silence_is_allowed_for_the_start_only() -> None:
    starting = step(Watch(0.0), Seen(None, 0, 0, "starting"), START_S)
    assert starting.action == "none"
    assert starting.condition.state == "starting"
    late = step(Watch(0.0), Seen(None, 0, 0, "starting"), START_S + 1)
    assert late.action == "kill"
    assert "within 70 s of its start" in late.why
