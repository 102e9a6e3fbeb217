"""Single-owner election on the real broker: one owner at a time, a member that joins does not
take the role away (a restart of another instance must not pause it), and when the owner goes
the other takes over."""

from __future__ import annotations

import time

import pytest

from katagate.eventlog.election import Election
from katagate.eventlog.topics import TopicNames
from tests.integration.kata_harness import wait_for

pytestmark = pytest.mark.kafka


def test_the_role_stays_with_its_owner_when_another_joins_and_moves_when_it_goes(
        kafka_settings):
    topic = TopicNames(kafka_settings.topic_prefix).quarantine
    first = Election(kafka_settings, "test-role", topic, "first")
    wait_for(first.tick, 30, "the first member to own the role")
    second = Election(kafka_settings, "test-role", topic, "second")
    try:
        # Long enough for the join's rebalance to complete, several times over.
        until = time.monotonic() + 8
        while time.monotonic() < until:
            assert first.tick()
            assert not second.tick()
            time.sleep(0.05)
        first.close()
        began = time.monotonic()
        wait_for(second.tick, 30, "the second member to take the role over")
        print(f"taken over in {time.monotonic() - began:.1f} s")
    finally:
        second.close()
