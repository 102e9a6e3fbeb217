"""The broker crashes (kill -9) under a steady load and comes back: while it is down ingest
answers 451, never 250; the stages ride it out; afterwards every message accepted with 250 has
exactly one terminal event, no slot is held, and every one reached the next hop."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import SOAK, PrivateBroker
from tests.faults.harness import Rig, Senders

pytestmark = pytest.mark.kafka


def test_a_broker_crash_gets_451s_never_a_250_and_loses_nothing(private_broker: PrivateBroker,
                                                                 tmp_path):
    kafka = private_broker.namespace("outage")
    # A sender waits at most this long for its reply: shorter than the outage.
    rig = Rig(kafka, tmp_path, ingest_env={"KATAGATE_INGEST_COMMIT_TIMEOUT_S": "3"}).start()
    try:
        senders = Senders(rig.smtp_port, count=2000 if SOAK else 600).start()
        time.sleep(3)
        private_broker.crash()
        down = time.monotonic()
        time.sleep(30 if SOAK else 10)
        up = time.monotonic()
        private_broker.start()
        senders.join(timeout_s=300)
        assert len(senders.accepted) == senders.count, "the senders did not finish"

        # Replies given while the broker was down (a 250 for a commit that completed just
        # before the crash may still be on its way for a moment: half a second of grace).
        during = [a for a in senders.attempts if down + 0.5 < a.ended < up]
        assert during, "no reply came while the broker was down"
        assert {a.code for a in during} == {451}, [a.code for a in during]
        rig.assert_nothing_lost(senders.accepted)
    finally:
        rig.stop()
