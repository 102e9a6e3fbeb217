"""Apply's shell, for administrators' requests that must change nothing, without a broker: a
resend already recorded is not sent again, and a queue action for a message that does not wait
in the queue writes nothing. (What a carried-out request does, with the broker and a next hop:
tests/e2e/test_backup_and_queue.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from katagate.decider.apply import Apply
from katagate.decider.settings import DeciderSettings
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.write_ahead import WriteAhead
from katagate.schemas import (
    BackupRemoved,
    BackupResendRequested,
    BackupResent,
    Event,
    QueueActionRequested,
    RawLocation,
)
from tests.unit.test_apply_written_ahead import Acking
from tests.unit.test_decider_core import REF, T0, received

M = "m0000001"
RESEND = BackupResendRequested(
    event_id=UUID(int=5), occurred_at=T0, producer=REF, message_id=M, actor="console:alice",
    envelope_from="a@example.org", recipients=["b@example.org"], to_original=True,
    location=RawLocation(topic="t.backup", partition=0, offsets=[3], chunk_bytes=1024),
    sha256="0" * 64)


@pytest.fixture
def apply():
    # Nothing listens on port 9: a handler that tried to read Kafka or send would record an
    # outcome (unavailable, deferred), never nothing.
    kafka = KafkaSettings(bootstrap_servers="127.0.0.1:9", topic_prefix="t", config_file=None,
                          config_dir=None, principal=None, request_timeout_s=1)
    # Outcomes are written ahead (eventlog/write_ahead.py), here to an in-process producer.
    producer = Acking()
    writer = WriteAhead(lambda: producer, "t.mail", bound_s=2)
    handler = Apply(kafka, DeciderSettings(next_hop_port=9, smtp_timeout_s=1, helo_name="gw"),
                    None, REF, lambda: datetime.now(UTC), writer)  # type: ignore[arg-type]
    handler.written = producer  # type: ignore[attr-defined]
    yield handler
    handler.close()
    writer.close(0.1)


def batch(handler: Apply, *events: Event) -> list[object]:
    records = [Consumed("t.mail", 0, n, M.encode(), Outgoing.event("t.mail", e).value)
               for n, e in enumerate(events)]
    return list(handler.decide_batch(records))


def test_a_resend_whose_outcome_apply_recorded_is_not_sent_again(apply):
    # Given the outcome of a resend request, read back (a redelivery after it was recorded)
    done = BackupResent(event_id=UUID(int=6), occurred_at=T0, producer=REF, message_id=M,
                        causation_id=RESEND.event_id, outcome="delivered",
                        next_hop="127.0.0.1:9", recipients=["b@example.org"], reply="250 ok")
    # When the request comes again, then nothing is sent or written
    assert batch(apply, done, RESEND) == [[], []]
    assert apply.written.sent == []


@pytest.mark.parametrize("action", ["retry", "bounce", "delete"])
def test_a_queue_action_for_a_message_not_waiting_writes_nothing(apply, action):
    # Given a message apply knows but never attempted, and one it never saw
    for message_id in (M, "m0000002"):
        asked = QueueActionRequested(event_id=UUID(int=8), occurred_at=T0, producer=REF,
                                     message_id=message_id, action=action, actor="cli:root")
        # When an administrator acts on it, then nothing is written
        assert batch(apply, received(M), asked) == [[], []]
    assert apply.written.sent == []


@pytest.mark.parametrize("cause", ["deleted_by_admin", "expired_age", "expired_size"])
def test_a_resend_of_a_copy_the_ledger_removed_is_refused_without_reading_it(apply, cause):
    # Given the Backup ledger removed the copy (its bytes wait for compaction, up to two days)
    removed = BackupRemoved(event_id=UUID(int=7), occurred_at=T0, producer=REF, message_id=M,
                            cause=cause, size=10, bytes_in_use=0, copies_in_use=0,
                            max_age_days=30, limit_bytes=1_048_576,
                            actor="console:alice" if cause == "deleted_by_admin" else None)
    # When a resend of it is asked after (a stale page, or a request written by hand)
    assert batch(apply, removed, RESEND) == [[], []]
    # Then it is recorded (written ahead) as unavailable, saying why, and nothing was read or
    # sent
    [written] = apply.written.events()
    assert isinstance(written, BackupResent)
    assert (written.outcome, written.causation_id) == ("unavailable", RESEND.event_id)
    assert written.reply == ("Backup copy unavailable: the copy was removed from the Backup "
                             f"({cause})")
