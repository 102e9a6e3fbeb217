"""The fault suite's rig: the stages as real processes (so they can be killed and restarted),
the KATA emulator and the demo sink. Its load: tests/faults/senders.py."""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from katagate.audit.reconcile import reconcile
from katagate.decider.ledger import Ledger
from katagate.eventlog.broker import free_port
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.projector.canonical import document
from katagate.projector.guard import token_file
from katagate.projector.replay import replay, timelines_jsonl
from katagate.schemas import KataSettings, decode_event
from tests.e2e.gateway import Gateway, Sink, is_terminal
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import ROOT, Emulator, wait_for


class Stage:
    """One stage as `python -m katagate NAME run`, its output appended to a log file."""

    def __init__(self, name: str, env: dict[str, str], log: Path, *args: str) -> None:
        self.name, self.env, self.log, self.args = name, env, log, args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "katagate", self.name, "run", *self.args], cwd=ROOT,
                env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Rig:
    """ingest, scanner and decider as processes on `kafka`, with the emulator and the sink.
    `kata_port` (settable until `start`) is where the scanner is told the Central Node is (a
    fault proxy, say); by default the emulator itself. The decider's next hop is the sink
    unless its stage's env names another port before `start`."""

    def __init__(self, kafka: KafkaSettings, tmp: Path, *, kata_port: int | None = None,
                 scanner_env: dict[str, str] | None = None,
                 ingest_env: dict[str, str] | None = None,
                 decider_env: dict[str, str] | None = None,
                 sink_args: tuple[str, ...] = (),
                 bootstrap_for_stages: str | None = None,
                 instances: int = 1, projector: bool = False,
                 kata: dict[str, Any] | None = None) -> None:
        self.kafka, self.tmp = kafka, tmp
        self.names = TopicNames(kafka.topic_prefix)
        self.emulator = Emulator(tmp / "kata").start()
        self.sink = Sink(tmp / "sink", *sink_args)
        self.smtp_port = free_port()
        self.common = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap_for_stages or kafka.bootstrap_servers,
                       "KATAGATE_TOPIC_PREFIX": kafka.topic_prefix,
                       "KATAGATE_TRANSACTION_TIMEOUT_MS": str(kafka.transaction_timeout_ms),
                       "KATAGATE_MAIL_PARTITIONS": str(kafka.mail_partitions),
                       # A secure cluster: each stage picks its own principal's file.
                       **({"KATAGATE_KAFKA_CONFIG_DIR": str(kafka.config_dir)}
                          if kafka.config_dir else {})}
        self.envs = {"ingest": ingest_env or {}, "scanner": scanner_env or {},
                     "decider": decider_env or {}}
        self.smtp_ports = [self.smtp_port]
        self.projector_ports: list[int] = []
        self.projector_tokens: list[str] = []  # each projector's read token
        self.stages: dict[str, Stage] = {}
        for n in range(instances):
            self._add_instance(n, projector)
        # Only the configuring and observing half of the threaded harness.
        self.observer = Gateway.__new__(Gateway)
        self.observer.kafka, self.observer.names = kafka, self.names
        self.kata_port = kata_port
        self.kata = kata or {}

    def _add_instance(self, n: int, projector: bool) -> None:
        """Stages of instance n: "ingest", "scanner", ... for the first, "ingest-1" ... after.
        Scanner instances share the sensor folder: one sensor id, one key (as a cluster of
        the product's nodes shares one integration), each with its own sensorInstanceId."""
        suffix = f"-{n}" if n else ""
        port = self.smtp_port if n == 0 else free_port()
        if n:
            self.smtp_ports.append(port)
        tmp, common = self.tmp, self.common
        self.stages[f"ingest{suffix}"] = Stage(
            "ingest", {**common, "KATAGATE_INGEST_PORT": str(port),
                       "KATAGATE_INGEST_RELAY_DOMAINS": '["example.net"]',
                       "KATAGATE_INGEST_INSTANCE_ID": f"ingest-{n}", **self.envs["ingest"]},
            tmp / f"ingest{suffix}.log")
        self.stages[f"scanner{suffix}"] = Stage(
            "scanner", {**common, "KATAGATE_SCANNER_STATE_DIR": str(tmp / "gw"),
                        "KATAGATE_SCANNER_INSTANCE_ID": f"scanner-{n}",
                        "KATAGATE_SCANNER_RECHECK_S": "0.3", **self.envs["scanner"]},
            tmp / f"scanner{suffix}.log")
        self.stages[f"decider{suffix}"] = Stage(
            "decider", {**common, "KATAGATE_DECIDER_NEXT_HOP_PORT": str(self.sink.port),
                        "KATAGATE_DECIDER_INSTANCE_ID": f"decider-{n}",
                        "KATAGATE_DECIDER_HELO_NAME": "gw.example.net",
                        "KATAGATE_DECIDER_RETRY_FIRST_S": "0.5", **self.envs["decider"]},
            tmp / f"decider{suffix}.log")
        if projector:
            self.projector_ports.append(free_port())
            self.projector_tokens.append(read_token(tmp / f"projector{suffix}"))
            self.stages[f"projector{suffix}"] = Stage(
                "projector", {**common, "KATAGATE_PROJECTOR_INSTANCE_ID": f"projector-{n}"},
                tmp / f"projector{suffix}.log", "--port", str(self.projector_ports[-1]),
                "--state-dir", str(tmp / f"projector{suffix}"))

    def start(self) -> Rig:
        self.observer.configure(KataSettings(
            central_node_address=IPv4Address("127.0.0.1"),
            central_node_port=self.kata_port or self.emulator.port,
            **{"poll_interval_s": 1, **self.kata}), [])
        first = {name: stage for name, stage in self.stages.items() if "-" not in name}
        for stage in first.values():
            stage.start()
        (sensor,) = wait_for(self.emulator.sensors, 60, "the integration request")
        self.emulator.cli("sensors", "accept", sensor["sensorId"])
        wait_for(lambda: "connected" in self.observer.connection_states(), 60, "connected")
        # Further instances once the sensor key exists: they load it, never make another.
        for name, stage in self.stages.items():
            if name not in first:
                stage.start()
        for port in self.smtp_ports:
            wait_for(lambda port=port: smtp_answers(port), 60, f"ingest listening on {port}")
        return self

    def stop(self) -> None:
        for stage in self.stages.values():
            stage.stop()
        self.emulator.stop()
        self.sink.stop()

    def settled(self, timeout_s: float = 180) -> dict[str, Any]:
        """Waits for a terminal event for every received message; returns the accounting."""
        def unsettled() -> dict[str, list[str]]:
            try:
                records = read_all(self.kafka, self.names.mail)
            except TimeoutError as exc:
                # Right after a broker crash a partition's end may not be reachable yet (a
                # transaction still settling): not settled, ask again within the wait.
                return {"(the mail log)": [str(exc)]}
            events = [decode_event(r.value) for r in records]
            received = {e.message_id for e in events if e.type == "mail.received"}
            left = received - {e.message_id for e in events if is_terminal(e)}
            return {m: [e.type for e in events if e.message_id == m] for m in sorted(left)}

        try:
            wait_for(lambda: not unsettled(), timeout_s,
                     "a terminal event for every received message")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self._diagnosis(unsettled())}") from None
        return reconcile(self.kafka, datetime.now(UTC))

    def _diagnosis(self, unsettled: dict[str, list[str]]) -> str:
        """What a rare failure leaves behind: the messages stuck and their events, the stages'
        warnings, and their logs kept where pytest's rotation of tmp folders will not reach."""
        kept = Path(os.environ.get("KATAGATE_FAULT_LOGS")
                    or Path(tempfile.gettempdir()) / "katagate-fault-logs")
        kept = kept / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        kept.mkdir(parents=True, exist_ok=True)
        lines = [f"{len(unsettled)} messages without a terminal event, first ones:"]
        lines += [f"  {m}: {', '.join(kinds)}" for m, kinds in list(unsettled.items())[:5]]
        for log in sorted(self.tmp.glob("*.log")):
            shutil.copy(log, kept / log.name)
            notable = [line for line in log.read_text(errors="replace").splitlines()
                       if re.search(r"WARNING|ERROR|Traceback|owner", line)]
            lines.append(f"--- {log.name}: {len(notable)} notable lines, the last ones:")
            lines += notable[-15:]
        lines.append(f"logs kept in {kept}")
        return "\n".join(lines)

    def assert_nothing_lost(self, accepted: list[str]) -> dict[str, Any]:
        """The invariants of docs/ARCHITECTURE.md after a fault: every message accepted with 250
        has exactly one terminal event, no quarantine slot is held, nothing is dead-lettered, and
        every accepted message arrived at the next hop."""
        accounts = self.settled()
        if accounts["duplicate_terminals"]:
            first = next(iter(accounts["duplicate_terminals"]))
            events = [decode_event(r.value)
                      for r in read_all(self.kafka, self.names.mail)]
            raise AssertionError(
                f"{len(accounts['duplicate_terminals'])} messages with more than one terminal "
                f"event; the first:\n" + "\n".join(e.model_dump_json()[:400] for e in events
                                                   if e.message_id == first))
        assert accounts["balanced"], accounts
        assert accounts["without_terminal"] == []
        assert accounts["terminal_exactly_once"] == accounts["accepted"] >= len(accepted)
        assert accounts["quarantine_held"] == []
        ledger = Ledger()
        for record in read_all(self.kafka, self.names.quarantine):
            ledger.evolve(decode_event(record.value))
        assert (ledger.messages_in_use, ledger.bytes_in_use) == (0, 0), "a slot leaked"
        assert read_all(self.kafka, self.names.deadletter) == []
        events = [decode_event(r.value)
                  for r in read_all(self.kafka, self.names.mail)]
        subject_of = {e.message_id: getattr(e, "subject", None) for e in events
                      if e.type == "mail.received"}
        missing = [m for m in accepted if m not in subject_of]
        assert not missing, f"accepted with 250 but not in the log: {missing[:5]}"
        arrived = b"\n".join(m.data for m in self.sink.messages())
        undelivered = [m for m in accepted
                       if f"Subject: {subject_of[m]}\r\n".encode() not in arrived]
        assert not undelivered, (
            f"accepted but never delivered: {undelivered[:5]}; the first one's events:\n"
            + "\n".join(e.model_dump_json()[:400] for e in events
                        if e.message_id == undelivered[0]))
        return accounts

    def assert_projections_equal_replay(self, timeout_s: float = 90) -> None:
        """Every projector's views, every message's timeline and the listing equal, byte for
        byte, what a fresh replay of the log computes."""
        replayed = replay(self.kafka).projections
        assert self.projector_ports, "the rig runs no projector"
        for port, token in zip(self.projector_ports, self.projector_tokens, strict=True):
            wait_for(lambda port=port, token=token: all(
                http_get(port, f"/state/{view}", token) == replayed.document(view)
                for view in ("connection", "quarantine", "counters")), timeout_s,
                f"projector on {port} to equal the replay")
            served = b"".join(http_get(port, f"/messages/{m}", token)
                              for m in replayed.message_ids())
            assert served == timelines_jsonl(replayed)
            page, more = replayed.listing(None, 1000, {})
            assert http_get(port, "/messages?limit=1000", token) == document(
                {"messages": page, "next": page[-1]["message_id"] if more else None})


def assert_no_secrets(rig: Rig) -> None:
    """The sensor's private key (mode 0600) is in no event and in no stage's log."""
    key_file = rig.tmp / "gw" / "sensor" / "sensor.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    body = [line for line in key_file.read_bytes().splitlines() if b"-----" not in line]
    needles = [b"PRIVATE KEY", *(line for line in body if len(line) > 20)]
    topics = (rig.names.mail, rig.names.control, rig.names.quarantine, rig.names.deadletter)
    for topic in topics:
        for record in read_all(rig.kafka, topic):
            assert not any(n in (record.value or b"") for n in needles), f"key material in {topic}"
    for log in rig.tmp.glob("*.log"):
        text = log.read_bytes()
        assert not any(n in text for n in needles), f"key material in {log.name}"


def read_token(projector_state: Path) -> str:
    """A read token for the projector of this state folder, made as `katagate up` makes the
    console's (kept in a 0600 file beside it)."""
    holder = projector_state / "test-read-token"
    token_file(projector_state / "tokens.json").ensure_in_file("tests", holder, "now")
    return holder.read_text().strip()


def http_get(port: int, path: str, token: str) -> bytes:
    """A projector's answer, or b"" while it cannot answer (starting, restarting)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - http
            return bytes(reply.read())
    except (OSError, urllib.error.URLError):
        return b""


def smtp_answers(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            return client.noop()[0] == 250
    except OSError:
        return False
