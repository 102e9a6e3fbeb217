"""The failover benchmark's window figures: which messages a fault's window holds, and what
counts as delayed by it."""

from bench.failover import slow_threshold, timeline, window

ACCEPTED = {"<a>": 100.0, "<b>": 101.0, "<c>": 102.0, "<d>": 110.0, "<e>": 103.0}
ARRIVED = {"<a>": 100.5, "<b>": 113.0, "<c>": 102.2, "<d>": 110.1}  # <e> never arrived


def test_a_window_holds_the_messages_accepted_within_it_and_their_end_to_end_times() -> None:
    figures = window(ACCEPTED, ARRIVED, 100.0, 110.0, slow_s=1.0)
    assert figures["messages"] == 3  # <d> was accepted at the window's end: not in it
    assert figures["not_arrived"] == 1
    assert figures["max_s"] == 12.0
    assert figures["p50_s"] == 0.5
    assert figures["slower_than_baseline"] == 1


def test_an_empty_window_reports_zeros_rather_than_failing() -> None:
    figures = window(ACCEPTED, ARRIVED, 0.0, 50.0)
    assert figures == {"messages": 0, "not_arrived": 0, "p50_s": 0.0, "p99_s": 0.0,
                       "max_s": 0.0}


def test_delayed_means_over_twice_the_quiet_p99_and_at_least_a_second_over_it() -> None:
    assert slow_threshold({"p99_s": 0.3}) == 1.3
    assert slow_threshold({"p99_s": 2.5}) == 5.0


def test_the_timeline_gives_each_step_its_count_and_longest_wait() -> None:
    assert timeline(ACCEPTED, ARRIVED, 100.0, step_s=2.0) == [
        [0.0, 2, 12.0], [2.0, 1, 0.2], [10.0, 1, 0.1]]
