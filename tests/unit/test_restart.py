"""A part that Kafka fails is run again; a part with a bug stops the stage."""

from __future__ import annotations

import threading

from confluent_kafka import KafkaError, KafkaException

from katagate.eventlog.errors import ConsumerFailed, ReadStalled
from katagate.eventlog.restart import restarting


def test_kafka_trouble_restarts_the_part_until_it_returns():
    stop = threading.Event()
    troubles = [KafkaException(KafkaError(KafkaError._TIMED_OUT)), ConsumerFailed("fenced")]
    runs = []

    def part() -> None:
        runs.append(1)
        if troubles:
            raise troubles.pop(0)

    restarting("part", part, stop, pause_s=0)()
    assert len(runs) == 3
    assert not stop.is_set()


def test_a_bug_stops_the_stage_and_is_kept():
    stop, failed = threading.Event(), []
    runs = []

    def part() -> None:
        runs.append(1)
        raise ValueError("a bug")

    restarting("part", part, stop, pause_s=0, failed=failed)()
    assert len(runs) == 1
    assert stop.is_set()
    assert isinstance(failed[0], ValueError)


def test_a_stop_ends_the_restarts():
    stop = threading.Event()

    def part() -> None:
        stop.set()
        raise ConsumerFailed("fenced")

    restarting("part", part, stop, pause_s=0)()
    assert stop.is_set()


def test_a_quarantine_ledger_kafka_cannot_serve_in_time_restarts_the_admission(
        monkeypatch) -> None:
    # Seen in the cluster failover test: the controller quorum was busy for half a minute
    # after a node died, and the new ledger owner could not read the ledger to its end.
    import katagate.decider.admission as admission
    from katagate.eventlog.settings import KafkaSettings

    def slow_ledger(*_args: object, **_kwargs: object) -> None:
        raise ReadStalled("reading stalled at {('t.quarantine', 0): 0} (ends ...)")

    monkeypatch.setattr(admission, "fold_to_end", slow_ledger)
    stop, failed, runs = threading.Event(), [], []

    def part() -> None:
        runs.append(1)
        if len(runs) == 1:
            admission.fold_ledger(KafkaSettings(bootstrap_servers="unused:9"), timeout_s=0)

    restarting("admission", part, stop, pause_s=0, failed=failed)()
    assert len(runs) == 2
    assert not failed
