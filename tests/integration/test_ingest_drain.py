"""Stopping ingest, on the real broker and real sockets (ingest/README.md, "Stopping"): /readyz
says draining at once, a new connection gets 421 4.3.2 as its greeting, a transaction begun
finishes and its message is in Kafka, new work gets 421 and the connection closes, and ingest
exits as soon as no session is left, or at drain_timeout_s."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.settings import KafkaSettings
from tests.integration.test_ingest_harness import (
    Ingest,
    IngestProcess,
    RawClient,
    first_line,
    received,
)

pytestmark = pytest.mark.kafka

DRAINING = "421 4.3.2 mx.test Service shutting down, try again later"
BODY = b"Subject: drained\r\n\r\nfinished while stopping\r\n."


def readyz(address: tuple[str, int]) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/readyz",
                                    timeout=5) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_draining(address: tuple[str, int]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, body = readyz(address)
        if body.get("status") == "draining":
            assert status == 503
            return dict(body)
        time.sleep(0.05)
    raise AssertionError(f"/readyz never said draining: {body}")


def refused_draining() -> float:
    value = REGISTRY.get_sample_value("katagate_ingest_refusals_total",
                                      {"reason": "draining", "kind": "temporary"})
    return value or 0.0


def wait_logged(caplog: pytest.LogCaptureFixture, start: str) -> None:
    deadline = time.monotonic() + 10
    while not any(r.getMessage().startswith(start) for r in caplog.records):
        assert time.monotonic() < deadline, f"not logged: {start}"
        time.sleep(0.02)


def in_transaction(address: tuple[str, int]) -> RawClient:
    client = RawClient(address)
    assert client.cmd("EHLO client.test").startswith("250")
    assert client.cmd("MAIL FROM:<alice@example.org>").startswith("250")
    assert client.cmd("RCPT TO:<bob@example.net>").startswith("250")
    return client


def greeting_while_draining(address: tuple[str, int]) -> RawClient:
    client = RawClient(address)
    assert client.greeting == DRAINING
    assert client.closed()
    return client


def test_a_transaction_begun_finishes_and_new_work_gets_421_then_ingest_exits(
        kafka_settings, caplog):
    metrics_port = free_port()
    refused_before = refused_draining()
    with (caplog.at_level(logging.INFO, logger="katagate.ingest.drain"),
          Ingest(kafka_settings, drain_timeout_s=30, metrics_port=metrics_port) as ingest):
        # Given a session with MAIL and RCPT given, when stop is set
        first = in_transaction(ingest.address)
        stopped = time.monotonic()
        ingest.stop.set()
        # Then /readyz says draining at once, naming the session open
        body = wait_draining(("127.0.0.1", metrics_port))
        assert body["checks"]["smtp"]["detail"].startswith("1 sessions open")
        # And a new connection gets 421 4.3.2 as its greeting, and is closed
        greeting_while_draining(ingest.address).close()
        # And the transaction begun finishes: its DATA gets 250 as usual
        assert first.cmd("DATA").startswith("354")
        queued = first.cmd(BODY)
        assert queued.startswith("250 2.0.0 Ok: queued as "), queued
        # And new work in that session gets 421 and the connection closes
        assert first.cmd("MAIL FROM:<alice@example.org>") == DRAINING
        assert first.closed()
        first.close()
        # And ingest exits as soon as no session is left, well before drain_timeout_s
        ingest.thread.join(20)
        assert not ingest.thread.is_alive()
        assert time.monotonic() - stopped < 15
    # And the message is in Kafka
    [event] = received(kafka_settings)
    assert queued.endswith(event.message_id)
    assert event.subject == "drained"
    assert refused_draining() - refused_before == 2  # the greeting and the MAIL
    lines = [r.getMessage() for r in caplog.records if r.name == "katagate.ingest.drain"]
    assert lines[0].startswith("draining: 1 sessions open")
    assert lines[-1].startswith("drain ended after ")
    assert lines[-1].endswith(": 1 of 1 sessions finished, 0 closed at the bound")


def test_idle_sessions_get_421_at_their_next_command_or_at_the_bound(kafka_settings, caplog):
    bound_s = 2.0
    with (caplog.at_level(logging.INFO, logger="katagate.ingest.drain"),
          Ingest(kafka_settings, drain_timeout_s=bound_s) as ingest):
        # Given two sessions after EHLO only, when stop is set
        talking, silent = RawClient(ingest.address), RawClient(ingest.address)
        for client in (talking, silent):
            assert client.cmd("EHLO client.test").startswith("250")
        stopped = time.monotonic()
        ingest.stop.set()
        wait_logged(caplog, "draining: 2 sessions open")
        # Then a command with no transaction in progress gets 421 and the connection closes
        # (RSET or NOOP too: nothing is left to finish)
        assert talking.cmd("NOOP") == DRAINING
        assert talking.closed()
        # And the silent one gets the 421 at the bound, and is closed
        assert silent.reply() == DRAINING
        assert silent.closed()
        closed_after = time.monotonic() - stopped
        # And ingest exits within the bound and a small margin
        ingest.thread.join(20)
        exited_after = time.monotonic() - stopped
        assert not ingest.thread.is_alive()
        for client in (talking, silent):
            client.close()
    assert bound_s - 0.2 <= closed_after < bound_s + 1.0
    assert exited_after < bound_s + 3.0, exited_after
    lines = [r.getMessage() for r in caplog.records if r.name == "katagate.ingest.drain"]
    assert lines[0].startswith("draining: 2 sessions open")
    assert lines[-1].endswith(": 1 of 2 sessions finished, 1 closed at the bound")


def test_a_session_whose_proxy_header_comes_during_the_drain_gets_421_not_220(
        kafka_settings, caplog):
    with (caplog.at_level(logging.INFO, logger="katagate.ingest.drain"),
          Ingest(kafka_settings, proxy_protocol=True, proxy_protocol_hosts=["127.0.0.1/32"],
                 drain_timeout_s=30) as ingest):
        # Given a balancer's connection admitted before the stop, its header not yet sent
        balancer = socket.create_connection(ingest.address, 10)
        time.sleep(0.2)
        stopped = time.monotonic()
        ingest.stop.set()
        wait_logged(caplog, "draining: 1 sessions open")
        # When its header comes, then it is greeted with the drain's 421, and closed
        balancer.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n")
        assert first_line(balancer).decode() == DRAINING
        assert balancer.recv(1) == b""  # closed
        balancer.close()
        ingest.thread.join(20)
        assert time.monotonic() - stopped < 15


def test_a_message_being_written_at_the_bound_gets_its_250_before_the_close(tmp_path, caplog):
    # A broker of this test's own, to pause: a write that takes a while
    broker = LocalBroker(tmp_path / "broker")
    broker.start(port=free_port())
    pid = broker.status().pid
    assert pid
    try:
        kafka = KafkaSettings(bootstrap_servers=broker.status().bootstrap_servers,
                              topic_prefix=f"t{uuid.uuid4().hex[:12]}", mail_partitions=3,
                              transaction_timeout_ms=10_000, request_timeout_s=5.0)
        with (caplog.at_level(logging.INFO, logger="katagate.ingest.drain"),
              Ingest(kafka, commit_timeout_s=10, drain_timeout_s=0) as ingest):
            warm = in_transaction(ingest.address)  # the producer connected
            assert warm.cmd("DATA").startswith("354")
            assert warm.cmd(BODY).startswith("250 ")
            warm.close()
            # Given a session whose message is being written when the drain's bound comes
            first = in_transaction(ingest.address)
            assert first.cmd("DATA").startswith("354")
            os.kill(pid, signal.SIGSTOP)
            try:
                first.send(BODY + b"\r\n")
                time.sleep(0.5)
                ingest.stop.set()  # drain_timeout_s 0: the bound at once
                wait_logged(caplog, "draining: 1 sessions open")
                time.sleep(1.0)
            finally:
                os.kill(pid, signal.SIGCONT)
            # Then it gets its 250 once written, and only then the drain's 421 and the close
            queued = first.reply()
            assert queued.startswith("250 2.0.0 Ok: queued as "), queued
            assert first.reply() == DRAINING
            assert first.closed()
            first.close()
            ingest.thread.join(20)
            assert not ingest.thread.is_alive()
        assert queued.rsplit(" ", 1)[1] in {e.message_id for e in received(kafka)}
        lines = [r.getMessage() for r in caplog.records if r.name == "katagate.ingest.drain"]
        assert lines[-1].endswith(": 0 of 1 sessions finished, 1 closed at the bound")
    finally:
        os.kill(pid, signal.SIGCONT)
        broker.stop()
        shutil.rmtree(tmp_path / "broker", ignore_errors=True)


def test_katagate_ingest_run_drains_on_sigterm(kafka_settings, tmp_path):
    log = tmp_path / "ingest.log"
    with IngestProcess(kafka_settings, log, drain_timeout_s=30, metrics_port=0) as ingest:
        # Given a session with MAIL and RCPT given, when the process gets SIGTERM
        first = in_transaction(ingest.address)
        stopped = time.monotonic()
        ingest.process.send_signal(signal.SIGTERM)
        # Then it drains: /readyz says so, a new connection gets 421 4.3.2
        wait_draining(ingest.listening["ingest-metrics"])
        greeting_while_draining(ingest.address).close()
        # And the message begun gets its 250, QUIT its 221
        assert first.cmd("DATA").startswith("354")
        queued = first.cmd(BODY)
        assert queued.startswith("250 2.0.0 Ok: queued as "), queued
        assert first.cmd("QUIT").startswith("221")
        first.close()
        # And the process exits cleanly once no session is left
        assert ingest.process.wait(20) == 0
        assert time.monotonic() - stopped < 15
        # And the listener is closed once it has
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(ingest.address, timeout=2).close()
    [event] = received(kafka_settings)
    assert queued.endswith(event.message_id)
    text = log.read_text()
    assert "draining: 1 sessions open" in text
    assert ": 1 of 1 sessions finished, 0 closed at the bound" in text
