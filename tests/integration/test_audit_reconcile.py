"""`reconcile` on the real broker: it reads the mail log and the ledger to their last stable
offsets (committed records only, undecodable ones counted) and balances the accounts."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from katagate.audit.reconcile import reconcile
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import wait_for
from tests.integration.test_projector_live import publish_routed
from tests.unit.test_projector_flows import SCENARIOS, all_flows, message_flow

pytestmark = pytest.mark.kafka


def test_reconcile_reads_committed_records_to_the_ends_and_balances(
        kafka_settings: KafkaSettings) -> None:
    # Given every scenario's flow committed, an undecodable record, an aborted transaction
    # holding a second terminal event of one message, and a transaction left open
    routed = all_flows(len(SCENARIOS) * 2)
    publish_routed(kafka_settings, routed)
    names = TopicNames(kafka_settings.topic_prefix)
    writer = TransactionalProducer(kafka_settings, f"test-reconcile-{uuid.uuid4().hex[:8]}")
    writer.begin()
    writer.produce([Outgoing(names.mail, b"not an event", b"MSG00000000")])
    writer.commit()
    terminal = [e for t, e in message_flow(0) if t == "mail"][-1]
    writer.begin()
    writer.produce([Outgoing.event(names.mail, terminal)])
    writer.flush()
    writer.abort("the test aborts")
    # (a commit returns before its markers are written: wait until readers see it all)
    logged = [t for t, _e in routed if t in ("mail", "quarantine")]
    wait_for(lambda: len(read_all(kafka_settings, names.mail))
             + len(read_all(kafka_settings, names.quarantine)) == len(logged) + 1, 30,
             "the committed records to be visible")
    holder = TransactionalProducer(kafka_settings, f"test-reconcile-{uuid.uuid4().hex[:8]}")
    holder.begin()
    holder.produce([Outgoing.event(names.mail, terminal)])
    holder.flush()
    try:
        # When the accounts are read
        began = time.monotonic()
        report = reconcile(kafka_settings, datetime.now(UTC))
        # Then every committed record was read, at once, and nothing aborted or open
        assert time.monotonic() - began < 10
        assert report["records_read"] == len(logged) + 1
        assert report["undecodable_records"] == 1
        assert report["accepted"] == report["terminal_exactly_once"] == len(SCENARIOS) * 2
        assert report["duplicate_terminals"] == {}
        assert report["balanced"] is True
    finally:
        holder.abort("the test is over")
        holder.close()
        writer.close()
