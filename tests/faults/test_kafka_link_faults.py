"""The network between the stages and Kafka fails under a steady load: slow, reset, stalled,
half-open, refusing. The broker advertises a fault proxy's port to clients, so every stage
reaches Kafka only through it; brokers and the test's own readers use an internal listener.
Ingest answers 250 or 451, nothing else; afterwards every accepted message has exactly one
terminal event and arrived at the next hop.

Soak only: each fault lasts long enough to outlast the stages' timeouts (about two minutes)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import ensure_topics
from tests.faults.conftest import SOAK
from tests.faults.harness import Rig
from tests.faults.proxy import FaultProxy
from tests.faults.senders import Senders

pytestmark = [pytest.mark.kafka, pytest.mark.soak]

HOLD_S = 15.0 if SOAK else 6.0
HEAL_S = 5.0 if SOAK else 3.0


class ProxiedBroker:
    def __init__(self, folder: Path) -> None:
        self.port, self.internal = free_port(), free_port()
        self.proxy = FaultProxy(self.port).start()
        self.broker = LocalBroker(folder, advertised_port=self.proxy.port,
                                  internal_port=self.internal)
        self.broker.start(port=self.port, timeout=180)

    def stop(self) -> None:
        self.broker.stop()
        self.proxy.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedBroker]:
    folder = tmp_path_factory.mktemp("proxied-broker")
    broker = ProxiedBroker(folder)
    yield broker
    broker.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_the_link_to_kafka_failing_gets_451s_never_a_loss(proxied: ProxiedBroker, tmp_path):
    # The test reads on the internal listener, around the proxy.
    direct = f"127.0.0.1:{proxied.internal}"
    kafka = KafkaSettings(bootstrap_servers=direct, topic_prefix="link", mail_partitions=3,
                          transaction_timeout_ms=10_000, request_timeout_s=30.0)
    ensure_topics(new_admin(KafkaSettings(bootstrap_servers=direct)), kafka)
    proxy = proxied.proxy
    rig = Rig(kafka, tmp_path, bootstrap_for_stages=f"127.0.0.1:{proxy.port}",
              ingest_env={"KATAGATE_INGEST_COMMIT_TIMEOUT_S": "3"}, projector=True).start()

    def resets() -> None:
        for _ in range(3):
            proxy.reset()
            time.sleep(HOLD_S / 3)

    schedule: list[tuple[str, Callable[[], None]]] = [
        ("slow (300 ms each way)", lambda: proxy.latency(0.3)),
        ("reset", resets),
        ("stalled", proxy.stall),
        ("half-open", proxy.half_open),
        ("refused", proxy.refuse),
    ]
    try:
        senders = Senders(rig.smtp_port, count=3000 if SOAK else 800).start()
        for name, fault in schedule:
            time.sleep(HEAL_S)
            print(f"fault: {name}", flush=True)
            fault()
            if name != "reset":
                time.sleep(HOLD_S)
            proxy.heal()
        senders.join(timeout_s=600)
        assert len(senders.accepted) == senders.count, "the senders did not finish"
        codes = {a.code for a in senders.attempts}
        assert codes <= {250, 451}, codes
        print(f"replies: {sorted((c, sum(a.code == c for a in senders.attempts)) for c in codes)}")
        rig.assert_nothing_lost(senders.accepted)
        rig.assert_projections_equal_replay()
    finally:
        rig.stop()
