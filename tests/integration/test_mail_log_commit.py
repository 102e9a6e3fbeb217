"""Given the real broker, the mail log tells only of what the log holds: a line is written once
the transaction holding its event committed, never for an aborted one, and once for a ledger
event written to two topics."""

from __future__ import annotations

import logging

import pytest

from katagate.eventlog import mail_log
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.topics import TopicNames
from katagate.schemas import QuarantineReleased
from tests.integration.kafka_read import read_all
from tests.unit.test_mail_log import MID, envelope, received

pytestmark = pytest.mark.kafka


def released() -> QuarantineReleased:
    return QuarantineReleased(**envelope(), size=233, bytes_in_use=0, messages_in_use=0,
                              cause="action_applied")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == mail_log.LOGGER]


def test_a_line_is_written_after_the_commit_and_never_for_an_aborted_transaction(
        kafka_settings, caplog):
    names = TopicNames(kafka_settings.topic_prefix)
    producer = TransactionalProducer(kafka_settings, "test-mail-log")
    caplog.set_level(logging.INFO, logger=mail_log.LOGGER)

    # Given a received message produced in a transaction that is then aborted
    producer.begin()
    producer.produce([Outgoing.event(names.mail, received())])
    producer.flush()  # in the log, its transaction undecided
    assert lines(caplog) == []
    producer.abort(reason="the test aborts")
    # Then nothing is logged for it
    assert lines(caplog) == []

    # Given a ledger event written to the quarantine and mirrored to the mail topic
    event = released()
    producer.begin()
    producer.produce([Outgoing.event(names.quarantine, event), Outgoing.event(names.mail, event)])
    producer.flush()
    # When nothing is committed yet, then nothing is logged
    assert lines(caplog) == []
    producer.commit()
    producer.close()
    # Then, once committed, one line for it, and the log holds what the line tells
    assert lines(caplog) == [f"{MID} quarantine released cause=action_applied usage=0 "
                             "messages=0"]
    assert [r.header("katagate-type") for r in read_all(kafka_settings, names.mail)] == [
        b"quarantine.released"]
