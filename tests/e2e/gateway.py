"""The whole gateway for end-to-end tests: ingest, scanner and decider on the real broker (in
threads of the test process), the KATA emulator and the demo sink as real processes, driven by a
real SMTP client."""

from __future__ import annotations

import json
import re
import smtplib
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from katagate.decider.run import run_decider
from katagate.decider.settings import DeciderSettings
from katagate.demo_sink.store import read_messages
from katagate.eventlog.broker import free_port
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.ingest.run import run_ingest
from katagate.ingest.settings import IngestSettings
from katagate.scanner.run import run_scanner
from katagate.scanner.settings import ScannerSettings
from katagate.schemas import (
    Event,
    KataProtectionToggled,
    KataSettings,
    KataSettingsChanged,
    ProducerRef,
    Rule,
    RuleChanged,
    RuleCreated,
    decode_event,
    terminal_outcome,
)
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import ROOT, Emulator, publish, wait_for


def is_terminal(event: Event) -> bool:
    return terminal_outcome(event) is not None


class Sink:
    def __init__(self, folder: Path, *extra: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "katagate.demo_sink", "--port", str(self.port),
             "--dir", str(folder), *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("sink="), line

    def messages(self) -> list[Any]:
        return read_messages(self.folder)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Gateway:
    def __init__(self, kafka: KafkaSettings, tmp: Path, *, rules_file: Path | None = None,
                 kata: dict[str, Any] | None = None, decider: dict[str, Any] | None = None,
                 clock: Callable[[], datetime] | None = None,
                 rules: list[Rule] | None = None, ingest: dict[str, Any] | None = None,
                 sink_args: tuple[str, ...] = ()) -> None:
        self.kafka = kafka
        self.names = TopicNames(kafka.topic_prefix)
        self.emulator = Emulator(tmp / "kata", rules=rules_file).start()
        self.sink = Sink(tmp / "sink", *sink_args)
        self.stop_event = threading.Event()
        kata_settings = KataSettings(central_node_address=IPv4Address("127.0.0.1"),
                                     central_node_port=self.emulator.port,
                                     **{"poll_interval_s": 1, **(kata or {})})
        self.configure(kata_settings, rules or [])
        self.smtp_port = free_port()
        ready = threading.Event()
        scanner = ScannerSettings(state_dir=tmp / "gw", instance_id="scanner-0", recheck_s=0.3,
                                  request_timeout_s=5)
        decider_settings = DeciderSettings(**{  # `decider` may name another next hop
            "instance_id": "decider-0", "next_hop_port": self.sink.port,
            "helo_name": "gw.example.net", "retry_first_s": 0.5, **(decider or {})})
        # Recipient verification, when asked for, probes the sink, the decider's next hop.
        ingest_settings = IngestSettings(**{
            "port": self.smtp_port, "relay_domains": ["example.net"],
            "hostname": "gw.example.net", "instance_id": "ingest-0",
            "verify_port": self.sink.port, **(ingest or {})})
        self._decider_run = (decider_settings, {"clock": clock} if clock is not None else {})
        # The decider stops on its own event too (stop_decider): a stop of that stage alone.
        self.decider_stop = threading.Event()
        self.threads = [
            threading.Thread(target=run_scanner, args=(kafka, scanner, self.stop_event),
                             daemon=True),
            threading.Thread(target=run_ingest, args=(kafka, ingest_settings, self.stop_event),
                             kwargs={"ready": lambda h, p: ready.set()}, daemon=True),
        ]
        for thread in self.threads:
            thread.start()
        self.start_decider()
        assert ready.wait(60), "ingest did not start listening"
        (sensor,) = wait_for(self.emulator.sensors, what="the gateway's integration request")
        self.emulator.cli("sensors", "accept", sensor["sensorId"])
        wait_for(lambda: "connected" in self.connection_states(), 60, "connected")

    def configure(self, kata: KataSettings, rules: list[Rule]) -> None:
        ref = ProducerRef(stage="admin", instance="test")
        now = datetime.now(UTC)
        events: list[Event] = [
            KataSettingsChanged(event_id=uuid.uuid4(), occurred_at=now, producer=ref, version=1,
                                actor="test", settings=kata, changed=["central_node_address"]),
            KataProtectionToggled(event_id=uuid.uuid4(), occurred_at=now, producer=ref,
                                  version=2, actor="test", enabled=True),
        ]
        # The built-in default rule is changed, never created (its KATA section only).
        events += [(RuleChanged if rule.rule_id == "default" else RuleCreated)(
                       event_id=uuid.uuid4(), occurred_at=now, producer=ref, version=3 + i,
                       actor="test", rule=rule)
                   for i, rule in enumerate(rules)]
        publish(self.kafka, self.names.control, events)

    def start_decider(self) -> None:
        settings, extra = self._decider_run
        self.decider_stop = threading.Event()
        self.decider = threading.Thread(target=run_decider,
                                        args=(self.kafka, settings, self.decider_stop),
                                        kwargs=extra, daemon=True)
        self.decider.start()
        self.threads.append(self.decider)

    def stop_decider(self, timeout_s: float = 60.0) -> None:
        """As SIGTERM does to `katagate decider run`; returns once it has ended."""
        self.decider_stop.set()
        self.decider.join(timeout_s)
        assert not self.decider.is_alive(), f"the decider did not stop in {timeout_s} s"

    def close(self) -> None:
        self.stop_event.set()
        self.decider_stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        self.emulator.stop()
        self.sink.stop()

    # -- observing ------------------------------------------------------------------------

    def control_events(self) -> list[Event]:
        return [decode_event(r.value) for r in read_all(self.kafka,
                                                        self.names.control)]

    def connection_states(self) -> list[str]:
        return [getattr(e, "state", "") for e in self.control_events()
                if e.type == "connection.state_changed"]

    def mail_events(self, message_id: str | None = None) -> list[Event]:
        events = [decode_event(r.value) for r in read_all(self.kafka,
                                                          self.names.mail)]
        return [e for e in events if message_id is None or
                getattr(e, "message_id", None) == message_id]

    def wait_terminal(self, message_id: str, timeout_s: float = 60.0) -> list[Event]:
        def done() -> list[Event] | None:
            events = self.mail_events(message_id)
            return events if any(is_terminal(e) for e in events) else None
        events: list[Event] = wait_for(done, timeout_s, f"a terminal event for {message_id}")
        return events

    # -- sending --------------------------------------------------------------------------

    def send(self, data: bytes, *, sender: str = "alice@example.org",
             recipients: tuple[str, ...] = ("bob@example.net",)) -> str:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail(sender)
            for rcpt in recipients:
                code, reply = client.rcpt(rcpt)
                assert code == 250, reply
            code, reply = client.data(data)
        assert code == 250, reply
        match = re.search(rb"queued as ([A-Za-z0-9]+)", reply)
        assert match, reply
        return match.group(1).decode()


def rule(rule_id: str, action: str, *, tag: str | None = "[KATA detect]", backup: bool = True,
         recipients: tuple[str, ...] = ("*",), position: int = 0) -> Rule:
    return Rule.model_validate({
        "rule_id": rule_id, "name": rule_id, "position": position,
        "recipients": list(recipients),
        "kata": {"action": action, "tag": tag, "backup": backup},
    })


def dump(events: list[Event]) -> str:
    return json.dumps([e.type for e in events])
