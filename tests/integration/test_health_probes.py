"""/healthz and /readyz on a stage's metrics listener, on the real broker and real sockets: a
transactional loop whose handler blocks is stalled (503, named) while /metrics still answers;
a projector rebuilding a log of thousands of records from offset 0 is alive but not ready
(503 "rebuilding", with its progress) until it has read the log as it stood at its start; a
scanner whose sensor the Central Node (the emulator) has not accepted yet is not ready, naming
the connection's state, and is once accepted."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from katagate.eventlog.handler import Handler
from katagate.eventlog.health import Health
from katagate.eventlog.health_server import HealthServer
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.scanner.run import run_scanner
from katagate.scanner.settings import ScannerSettings
from tests.integration.kata_harness import Emulator, configure_kata, wait_for
from tests.integration.test_projector_live import publish_routed, running
from tests.integration.tls_next_hop import free_port
from tests.unit.fixtures.events import sample_events
from tests.unit.test_projector_flows import all_flows

pytestmark = pytest.mark.kafka


def probe(address: tuple[str, int], path: str) -> tuple[int, Any]:
    url = f"http://{address[0]}:{address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            status, body = int(reply.status), reply.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, (body.decode() if path == "/metrics" else json.loads(body))


class Blocking(Handler):
    """Decides nothing until released: a handler stuck on something that never answers."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def decide_batch(self, records: Sequence[Consumed]) -> list[Sequence[Outgoing] | Exception]:
        self.entered.set()
        self.release.wait(30)
        return [() for _ in records]


def test_given_a_loop_whose_handler_blocks_then_healthz_is_503_naming_it_and_metrics_answer(
        kafka_settings: KafkaSettings) -> None:
    # Given a loop on the control topic, its health served as a stage serves it
    names = TopicNames(kafka_settings.topic_prefix)
    health = Health(stall_s=1.0)
    server = HealthServer("127.0.0.1", 0, health)
    handler = Blocking()
    loop = TransactionalLoop(
        kafka_settings, stage="decider", group_id="test-health-stuck",
        transactional_id="test-health-stuck", topics=[names.control], handler=handler,
        dead_letter_topic=names.deadletter, health=health)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            loop.run_once()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        # When it is in its group, restored, and polling: alive and ready
        wait_for(lambda: probe(server.address, "/readyz")[0] == 200, 15, "the loop ready")
        assert probe(server.address, "/healthz")[0] == 200
        # And a record arrives that its handler never finishes
        producer = TransactionalProducer(kafka_settings, "test-health-stuck-input")
        producer.begin()
        producer.produce([Outgoing.event(names.control, sample_events()[0])])
        producer.commit()
        producer.close()
        assert handler.entered.wait(15)
        # Then past health_stall_s /healthz is 503 and names the loop
        status, body = wait_for(lambda: (answer := probe(server.address, "/healthz"))[0] == 503
                                and answer, 5, "healthz 503")
        assert body["status"] == "stalled"
        assert body["checks"]["decider"]["ok"] is False
        assert body["checks"]["decider"]["detail"].startswith("no poll for ")
        assert probe(server.address, "/readyz")[1]["status"] == "stalled"
        # While /metrics, on the same listener, still answers
        status, page = probe(server.address, "/metrics")
        assert status == 200
        assert "katagate_loop_transactions_total" in page
        # And once the handler returns, the loop beats again
        handler.release.set()
        wait_for(lambda: probe(server.address, "/healthz")[0] == 200, 10, "healthz 200 again")
    finally:
        handler.release.set()
        stop.set()
        thread.join(30)
        loop.close()
        server.close()


def test_given_a_projector_rebuilding_from_offset_0_then_readyz_is_503_until_it_caught_up(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    # Given a log of some thousands of records
    routed = all_flows(400)
    assert len(routed) > 2000
    publish_routed(kafka_settings, routed, per_transaction=500)
    # When a projector rebuilds from offset 0, folding a small batch at a time
    with running(kafka_settings, tmp_path / "projector", rebuild=True, metrics_port=0,
                 batch_size=20) as live:
        assert live.metrics_address is not None
        address = live.metrics_address
        # Then it is not ready while it rebuilds, and says how far it is
        status, body = wait_for(lambda: (answer := probe(address, "/readyz"))[1]["status"]
                                in ("rebuilding", "ok") and answer, 10, "a rebuild state")
        assert (status, body["status"]) == (503, "rebuilding"), body
        with live.lock:  # the fold waits: what it says holds still
            status, body = probe(address, "/readyz")
            check = body["checks"]["projector"]
            assert (status, check["state"]) == (503, "rebuilding")
            assert 0 <= check["progress"] < 1
            done, total = map(int, check["detail"].removesuffix(" offsets read").split(" of "))
            assert done < total
            assert total >= len(routed)  # transaction markers take offsets too
            # While it lives
            assert probe(address, "/healthz")[0] == 200
        # And once it reached the log's end as it stood at its start, it is ready
        wait_for(lambda: probe(address, "/readyz")[0] == 200, 30, "readyz 200")
        assert live.records_read >= len(routed)
        # And the view port's own /healthz answers as the metrics listener's does
        assert live.address is not None
        assert probe(live.address, "/healthz")[1]["status"] == "ok"


def test_given_a_scanner_awaiting_the_central_nodes_acceptance_then_it_is_not_ready_until_then(
        kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    # Given a Central Node configured, and a scanner whose sensor it has not accepted yet
    kata = Emulator(tmp_path / "kata").start()
    configure_kata(kafka_settings, kata.port, poll_interval_s=1)
    address = ("127.0.0.1", free_port())
    settings = ScannerSettings(state_dir=tmp_path / "gateway", instance_id="scanner-0",
                               recheck_s=0.3, request_timeout_s=3, metrics_port=address[1])
    stop = threading.Event()
    thread = threading.Thread(target=run_scanner, args=(kafka_settings, settings, stop),
                              daemon=True)
    thread.start()
    try:
        (sensor,) = wait_for(kata.sensors, 15, "the sensor's integration request")
        # Then it lives, its partitions folded, but it is not ready: the Central Node says why
        def folded_awaiting() -> tuple[int, Any] | None:
            status, body = probe(address, "/readyz")
            checks = body["checks"]
            folded = checks.get("scanner", {}).get("ok")
            awaiting = checks.get("central_node", {}).get("state") == "awaiting_confirmation"
            return (status, body) if folded and awaiting else None

        status, body = wait_for(folded_awaiting, 15, "folded, awaiting confirmation")
        assert (status, body["status"]) == (503, "awaiting_confirmation")
        assert probe(address, "/healthz")[0] == 200
        # When the KATA administrator accepts it, it is ready
        kata.cli("sensors", "accept", sensor["sensorId"])
        status, body = wait_for(lambda: (answer := probe(address, "/readyz"))[0] == 200
                                and answer, 15, "readyz 200")
        assert body["checks"]["central_node"]["state"] == "connected"
    finally:
        stop.set()
        thread.join(30)
        kata.stop()
