"""librdkafka's repeated lines (eventlog/kafka_log.py): the first of a text in a window is
logged, its repeats are held back and counted, whichever client instance and timings they
carry; pure, with a clock of our own."""

from __future__ import annotations

from katagate.eventlog.kafka_log import RepeatFilter, same_text

REFUSED = ("FAIL [rdkafka#consumer-{n}] [thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: "
           "Connect to ipv4#127.0.0.1:1 failed: Connection refused (after {ms}ms in state "
           "CONNECT)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_given_a_line_repeated_within_the_window_then_only_the_first_is_logged():
    clock = Clock()
    repeats = RepeatFilter(window_s=30, clock=clock)
    # Given the same refusal from two clients, with different timings
    assert repeats.admit(40, REFUSED.format(n=1, ms=0)) == 0
    clock.now += 1
    assert repeats.admit(40, REFUSED.format(n=2, ms=3)) is None
    clock.now += 28
    assert repeats.admit(40, REFUSED.format(n=1, ms=0)) is None
    # When the window has passed
    clock.now += 1.5
    # Then it is logged again, saying how many were held back
    assert repeats.admit(40, REFUSED.format(n=1, ms=0)) == 2
    assert repeats.admit(40, REFUSED.format(n=1, ms=0)) is None


def test_given_another_text_or_level_then_it_is_logged_at_once():
    repeats = RepeatFilter(window_s=30, clock=Clock())
    assert repeats.admit(40, REFUSED.format(n=1, ms=0)) == 0
    assert repeats.admit(30, REFUSED.format(n=1, ms=0)) == 0
    assert repeats.admit(40, REFUSED.format(n=1, ms=0).replace(":1", ":2")) == 0


def test_the_same_text_keeps_the_address_and_drops_the_instance_and_timings():
    assert same_text(REFUSED.format(n=7, ms=12)) == (
        "FAIL [rdkafka] [thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: "
        "Connect to ipv4#127.0.0.1:1 failed: Connection refused")
