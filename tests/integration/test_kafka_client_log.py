"""librdkafka's log lines reach the stage's log through the `katagate.kafka` logger at their
level (eventlog/kafka_log.py), once per text, on real clients: one pointed at a closed port,
one at the real broker."""

from __future__ import annotations

import logging
import socket
import time
import uuid

from katagate.eventlog.clients import new_consumer
from katagate.eventlog.kafka_log import LOGGER
from katagate.eventlog.settings import KafkaSettings

# Reconnect at once and often: librdkafka then repeats its refusal many times a second.
EAGER = {"reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 20}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def poll_for(settings: KafkaSettings, seconds: float) -> None:
    consumer = new_consumer(settings, {"group.id": f"log-{uuid.uuid4().hex}", **EAGER})
    consumer.subscribe([f"{settings.topic_prefix}.mail"])
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            consumer.poll(0.1)
    finally:
        consumer.close()


def test_given_a_client_at_a_closed_port_then_the_refusal_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = closed_port()
    # When a consumer polls for three seconds against a port nobody listens on
    poll_for(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"), 3.0)
    # Then katagate.kafka logged the refusal, at ERROR as librdkafka rates it, once
    refused = [r for r in caplog.records
               if r.name == LOGGER and "Connection refused" in r.getMessage()]
    assert len(refused) == 1, [r.getMessage() for r in refused]
    assert refused[0].levelno >= logging.WARNING
    assert f"127.0.0.1:{port}" in refused[0].getMessage()


def test_given_a_client_on_the_real_broker_then_nothing_is_warned(caplog, kafka_settings):
    caplog.set_level(logging.INFO, logger=LOGGER)
    poll_for(kafka_settings, 2.0)
    warned = [r.getMessage() for r in caplog.records
              if r.name == LOGGER and r.levelno >= logging.WARNING]
    assert warned == []
