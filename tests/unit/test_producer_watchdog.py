"""A librdkafka call that never returns (confluentinc/librdkafka#5456) must not hang a stage:
the wrapper gives up on it after its timeout, replaces the producer, and says so."""

from __future__ import annotations

import threading

import pytest

import katagate.eventlog.producer as producer_module
from katagate.eventlog.producer import ProducerWedged, TransactionalProducer


class _Stuck:
    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def send_offsets_to_transaction(self, *_args: object) -> None:
        self.release.wait(10)


class _Prompt:
    def __init__(self) -> None:
        self.calls = 0

    def send_offsets_to_transaction(self, *_args: object) -> None:
        self.calls += 1


def bare_producer(raw: object) -> TransactionalProducer:
    """The wrapper around a stand-in for librdkafka's producer (no broker needed)."""
    wrapper = TransactionalProducer.__new__(TransactionalProducer)
    wrapper._timeout = 0.2
    wrapper._producer = raw  # type: ignore[assignment]
    wrapper._watchdog = producer_module._DaemonCaller()
    return wrapper


def test_a_call_that_returns_in_time_is_just_made(monkeypatch):
    raw = _Prompt()
    wrapper = bare_producer(raw)
    wrapper.send_offsets([], None)
    assert raw.calls == 1


def test_a_call_stuck_past_its_timeout_replaces_the_producer_and_raises(monkeypatch):
    release = threading.Event()
    wrapper = bare_producer(_Stuck(release))
    replaced: list[bool] = []
    monkeypatch.setattr(producer_module, "WEDGED_GRACE_S", 0.1)
    monkeypatch.setattr(wrapper, "recreate", lambda: replaced.append(True))
    try:
        with pytest.raises(ProducerWedged, match="did not return in 0 s"):
            wrapper.send_offsets([], None)
        assert replaced == [True]
        # The next call does not queue behind the stuck one.
        wrapper._producer = _Prompt()  # type: ignore[assignment]
        wrapper.send_offsets([], None)
    finally:
        release.set()


def test_a_closed_producer_leaves_no_thread_behind():
    class _Flushing(_Prompt):
        def flush(self, _timeout: float) -> int:
            return 0

    # Given a producer that made a call on its watchdog's thread
    before = set(threading.enumerate())
    wrapper = bare_producer(_Flushing())
    wrapper.send_offsets([], None)
    (watchdog,) = set(threading.enumerate()) - before
    # When it is closed, the thread ends (one per producer made stayed for good before)
    wrapper.close()
    watchdog.join(2)
    assert not watchdog.is_alive()
