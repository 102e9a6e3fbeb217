"""The dashboard against a real Prometheus: `katagate up` runs the whole gateway as processes on
a fresh topic namespace, Debian's Prometheus scrapes it every second with deploy/'s
configuration (targets rewritten to this test's ports) and alert rules, a short mixed load goes
in over SMTP, and then every query of every dashboard panel returns data through Prometheus's
HTTP API, and every alert rule evaluates without error.

The projector runs two instances, as compose and Kubernetes run it: each folds the whole log
and exports the same figures, so every panel over them must show the figure of one instance,
not their sum.

The load: clean mail; EICAR deleted (the default rule) and rejected (a rule: an NDR); a
recipient the next hop refuses (a failed delivery and its NDR); a verdict in state error;
slow scans that reach the 60 s response timeout, one with a detect that comes late; a
quarantine limited to 3 messages (count_limit denials); SMTP refusals, permanent (relaying
denied) and temporary (too many recipients); a record the decider cannot decode (dead-lettered).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from katagate.dashboard_cmd import DASHBOARD, rows
from katagate.eventlog.broker import free_port, free_port_run
from katagate.eventlog.clients import new_producer
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.projector.guard import token_file
from tests.conftest import ensure_namespace
from tests.e2e.gateway import Sink
from tests.e2e.up_env import up_env
from tests.integration.kata_harness import ROOT, wait_for
from tests.tools import require_tool
from tests.unit.test_deploy_files import projector_figures

pytestmark = pytest.mark.kafka

DEPLOY = ROOT / "deploy" / "prometheus"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
RESPONSE_TIMEOUT_S = 60  # the product's minimum
SLOW_SCAN_S = 64  # longer than the response timeout: a timeout, then a late verdict
RATE_INTERVAL = "1m"  # stands in for Grafana's $__rate_interval


def require_prometheus() -> str:
    return require_tool("prometheus", package="prometheus")


def get_json(url: str, timeout: float = 10, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (our URLs)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (our URLs)
        return json.loads(response.read())


def mail(subject: str, body: bytes, to: str = "bob@example.net") -> bytes:
    return (f"From: alice@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n\r\n").encode() + \
        body + b"\r\n"


class Up:
    """`katagate up --accept-sensor` in a subprocess, its output read on a thread."""

    def __init__(self, config: Path, env: dict[str, str], log: Path, *extra: str) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "katagate", "up", "--config", str(config),
             "--accept-sensor", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log.open("a") as out:
            for line in self.process.stdout:
                out.write(line)
                out.flush()
                self.lines.put(line.rstrip("\n"))

    def wait_line(self, prefix: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"`katagate up` printed no {prefix!r} line; it said: {self.seen}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


class Prometheus:
    def __init__(self, binary: str, config: Path, data: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(self._ready, 60, "Prometheus ready")
        # Targets are scraped from the first discovery update, a few seconds after ready.
        wait_for(self._all_scraped, 60, "a first scrape of every target")
        self.started = time.time()

    def _ready(self) -> bool:
        url = f"{self.url}/-/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
        return False

    def _all_scraped(self) -> bool:
        targets = self.api("targets")["activeTargets"]
        return bool(targets) and all(t["health"] != "unknown" for t in targets)

    def api(self, path: str, **params: str) -> Any:
        body = get_json(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def scrape_config(tmp: Path, ports: dict[str, list[int]]) -> Path:
    """deploy/'s configuration, scraping this test's processes (each stage's instances) every
    second."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / name) for name in config["rule_files"]]
    jobs = []
    for job in config["scrape_configs"]:
        stage = job["job_name"].removeprefix("katagate-")
        if stage in ports:  # every process of this test
            job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in ports[stage]]}]
            jobs.append(job)
    config["scrape_configs"] = jobs
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def smtp_send(port: int, data: bytes, to: str = "bob@example.net") -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        code, reply = client.rcpt(to)
        assert code == 250, reply
        code, reply = client.data(data)
    assert code == 250, reply
    return reply.decode().rsplit("queued as ", 1)[1].split()[0]


def smtp_refusals(port: int, max_recipients: int) -> None:
    """Relaying denied (550, permanent) and too many recipients (452, temporary)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        code, _ = client.rcpt("someone@elsewhere.example.com")
        assert code == 550
        for n in range(max_recipients):
            code, reply = client.rcpt(f"r{n}@example.net")
            assert code == 250, reply
        code, _ = client.rcpt("one-too-many@example.net")
        assert code == 452
        client.rset()


def test_every_dashboard_panel_returns_data_from_a_real_prometheus(kafka_bootstrap, tmp_path):
    prometheus_binary = require_prometheus()
    kafka = ensure_namespace(kafka_bootstrap)
    state = tmp_path / "state"
    sink = Sink(tmp_path / "sink", "--reject-rcpt", "nobody@example.net")
    smtp_port, projector_port, base = free_port(), free_port(), free_port_run(7)
    max_recipients = 100
    config = tmp_path / "katagate.toml"
    config.write_text(f"""
[paths]
state_dir = "{state}"
[ingest]
host = "127.0.0.1"
port = {smtp_port}
relay_domains = ["example.net"]
max_recipients = {max_recipients}
[decider]
next_hop_host = "127.0.0.1"
next_hop_port = {sink.port}
helo_name = "gw.example.net"
retry_first_s = 0.5
[scanner]
recheck_s = 0.3
request_timeout_s = 5
[kata]
central_node = "emulator"
response_timeout_s = {RESPONSE_TIMEOUT_S}
poll_interval_s = 1
protection = true
[emulator]
enabled = true
port = 0
[projector]
port = {projector_port}
[console]
port = {free_port()}
[metrics]
base_port = {base}
[sink]
enabled = false
""")
    env = up_env(kafka, tmp_path)
    # Every process's metrics on a port of its own, as `up` assigns them from base_port.
    ports = {"ingest": base, "scanner": base + 1, "decider": base + 2, "projector": base + 3,
             "console": base + 4, "audit": base + 5}
    projector = f"http://127.0.0.1:{projector_port}"
    # A reader of the views holds a token, made as `katagate projector token create` does.
    token = token_file(state / "projector" / "tokens.json").create("dashboard-test", "now")

    def projected(path: str) -> Any:
        return get_json(projector + path, token=token)

    def katagate(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "katagate", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"katagate {' '.join(args)}: {result.stderr}"

    def faults(*args: str) -> None:
        result = subprocess.run([sys.executable, "-m", "katagate.kata_emulator", "faults", *args,
                                 "--state", str(state / "kata")], cwd=ROOT, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr

    def message(message_id: str) -> dict[str, Any]:
        """The projector's view of a message; empty until the projector has seen it."""
        with contextlib.suppress(OSError):
            view: dict[str, Any] = projected(f"/messages/{message_id}")
            return view
        return {}

    def finished(*ids: str) -> bool:
        return all(message(m).get("outcome") for m in ids)

    started = time.monotonic()
    steps: list[str] = []

    def step(what: str) -> None:
        steps.append(f"{time.monotonic() - started:5.1f} s {what}")

    up = Up(config, env, tmp_path / "up.log")
    prometheus: Prometheus | None = None
    second: subprocess.Popen[bytes] | None = None
    try:
        up.wait_line("katagate is up", 120)
        # `up` says where each process serves its metrics: those are scraped.
        said = next(line.strip() for line in up.seen if line.startswith("metrics="))
        assert said == "metrics=" + ",".join(f"{name}:127.0.0.1:{port}"
                                             for name, port in ports.items()) + (
            f",up:127.0.0.1:{base + 6}")  # `up`'s own (its restarts): not a stage's
        # A second projector instance, folding the same log into a store of its own.
        second_metrics = free_port()
        with (tmp_path / "projector2.log").open("wb") as second_log:
            second = subprocess.Popen(
                [sys.executable, "-m", "katagate", "projector", "run", "--port", "0",
                 "--state-dir", str(tmp_path / "projector2")], cwd=ROOT,
                env={**env, "KATAGATE_PROJECTOR_METRICS_PORT": str(second_metrics)},
                stdout=second_log, stderr=subprocess.STDOUT)
        wait_for(lambda: _answers(f"http://127.0.0.1:{second_metrics}/metrics"), 60,
                 "the second projector's metrics")
        scraped = {name: [port] for name, port in ports.items()}
        scraped["projector"].append(second_metrics)
        step("katagate is up, with a second projector")
        prometheus = Prometheus(prometheus_binary, scrape_config(tmp_path, scraped),
                                tmp_path / "tsdb", tmp_path / "prometheus.log")
        step("prometheus scraped every target")
        wait_for(lambda: projected("/state/connection")["connection_state"]
                 == "connected", 60, "connected")
        katagate("rules", "add", "rejecting", "--recipients", "reject@example.net",
                 "--kata-action", "reject")

        # Slow scans against a quarantine of 3 messages: 3 admitted (they reach the response
        # timeout; the EICAR one's detect comes late), 2 denied (count_limit).
        faults("set", "--latency", str(SLOW_SCAN_S))
        katagate("settings", "set", "--quarantine-max-messages", "3")
        wait_for(lambda: projected("/state/quarantine")["limit_messages"] == 3, 30,
                 "the new quarantine limit")
        time.sleep(1)  # ingest stamps the settings version it has folded
        slow = [smtp_send(smtp_port, mail("slow detect", EICAR))]
        held = wait_for(lambda: message(slow[0]).get("quarantine"), 30,
                        "the slow EICAR's admission")
        assert held["admitted"], held
        slow += [smtp_send(smtp_port, mail(f"slow {n}", b"clean")) for n in range(4)]
        wait_for(lambda: projected("/state/quarantine")["denied_total"] >= 2, 30,
                 "two count_limit denials")
        wait_for(lambda: len(_processing_scans(state / "kata")) >= 3, 30,
                 "three slow scans submitted")
        faults("reset")
        katagate("settings", "set", "--quarantine-max-messages", "5000")
        wait_for(lambda: projected("/state/quarantine")["limit_messages"] == 5000,
                 30, "the quarantine limit back")
        time.sleep(1)

        step("slow scans submitted, quarantine limit back")
        # A verdict in state error, alone while the fault is on.
        faults("set", "--verdict-error-rate", "1")
        errored = smtp_send(smtp_port, mail("kata error", b"clean"))
        wait_for(lambda: finished(errored), 30, "the errored scan's outcome")
        faults("reset")

        fast = [smtp_send(smtp_port, mail(f"clean {n}", b"nothing to see")) for n in range(3)]
        fast += [smtp_send(smtp_port, mail(f"detect {n}", EICAR)) for n in range(2)]
        fast.append(smtp_send(smtp_port, mail("reject", EICAR, "reject@example.net"),
                              "reject@example.net"))
        fast.append(smtp_send(smtp_port, mail("refused", b"clean", "nobody@example.net"),
                              "nobody@example.net"))
        smtp_refusals(smtp_port, max_recipients)
        _dead_letter_one(kafka.bootstrap_servers, TopicNames(kafka.topic_prefix).mail)
        wait_for(lambda: finished(*fast), 60, "an outcome for every fast message")
        step("fast messages done")

        # The slow ones: response timeouts at 60 s, then the late verdicts.
        wait_for(lambda: finished(*slow), RESPONSE_TIMEOUT_S + 30, "the response timeouts")
        wait_for(lambda: message(slow[0]).get("late_verdicts"), SLOW_SCAN_S + 30,
                 "the late detect")
        step("timeouts and the late detect")
        time.sleep(3)  # a few more scrapes

        assert prometheus is not None
        targets = prometheus.api("targets")["activeTargets"]
        down = [(t["labels"]["job"], t["lastError"]) for t in targets if t["health"] != "up"]
        assert not down, f"targets not scraped: {down}"
        seen: list[dict[str, Any]] = []
        empty = _panels_without_data(prometheus, seen)
        (tmp_path / "panels.json").write_text(json.dumps(seen, indent=1))  # for a failure's reader
        assert not empty, "panels whose queries return no data:\n" + "\n".join(empty)
        received = next(r["last"] for r in seen if r["panel"] == "Messages received")
        assert round(received) == len(slow) + 1 + len(fast), f"Messages received: {received}"
        _assert_projector_figures_counted_once(prometheus, f"127.0.0.1:{ports['projector']}")
        _assert_rules_evaluate(prometheus)
        step("every panel and rule checked")
        print("\n".join(steps))
    finally:
        if prometheus is not None:
            prometheus.stop()
        if second is not None:
            second.terminate()
            second.wait(timeout=60)
        up.stop()
        sink.stop()


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)
    return False


def _one_instance(expr: str, instance: str) -> str:
    """The query restricted to one projector instance: its figures only."""
    figures = projector_figures()

    def restrict(match: re.Match[str]) -> str:
        name, matchers = match.group(1), match.group(2)
        if re.sub(r"_(bucket|sum|count)$", "", name) not in figures:
            return match.group(0)
        inner = f'instance="{instance}"' + (f", {matchers}" if matchers else "")
        return f"{name}{{{inner}}}"

    return re.sub(r"\b(katagate_[a-z_]+)(?:\{([^}]*)\})?", restrict, expr)


def _assert_projector_figures_counted_once(prometheus: Prometheus, instance: str) -> None:
    """Given two projectors folding one log, when each instant panel over their figures (and
    each plain gauge) is asked, then it shows what one projector alone shows: both instances
    caught up first, so the figures are the same. Each instance's own progress (its lag, the
    records it folded) is its own, and not compared."""
    figures = {n for n in projector_figures() if not n.startswith("katagate_projection_")}

    def caught_up() -> bool:
        data = prometheus.api("query", query="katagate_messages_received_total")["result"]
        return len(data) == 2 and len({s["value"][1] for s in data}) == 1

    wait_for(caught_up, 30, "both projectors at the same figure")
    time.sleep(2)  # a scrape or two of both at rest
    now = time.time()
    test_range = f"{math.ceil(now - prometheus.started) + 5}s"
    compared = []
    for _row, panels in rows(json.loads(DASHBOARD.read_text())):
        for panel in panels:
            for target in panel["targets"]:
                expr = (target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                        .replace("$__range", test_range))
                named = {re.sub(r"_(bucket|sum|count)$", "", n)
                         for n in re.findall(r"katagate_[a-z_]+", expr)}
                # The figures of the time range, and the gauges (rates over a minute are not
                # compared: two instances' samples, a second apart, extrapolate differently).
                if not named & figures or not (target.get("instant") or "[" not in expr):
                    continue
                both, one = ({json.dumps(s["metric"], sort_keys=True): float(s["value"][1])
                              for s in prometheus.api("query", query=q, time=f"{now}")["result"]}
                             for q in (expr, _one_instance(expr, instance)))
                assert both.keys() == one.keys(), f"{panel['title']}: {both} vs {one}"
                for labels, value in one.items():
                    if math.isfinite(value):
                        assert abs(both[labels] - value) <= max(0.5, 0.1 * abs(value)), (
                            f"{panel['title']} {labels}: {both[labels]} with two projectors, "
                            f"{value} from one ({expr})")
                compared.append(panel["title"])
    assert "Messages received" in compared
    assert "Messages held per rule" in compared


def _processing_scans(kata_state: Path) -> list[tuple[str, str]]:
    from katagate.kata_emulator.store import Store

    store = Store(kata_state, create=False)
    return [scan for sensor in store.sensors()
            for scan in store.scan_states(sensor.sensor_id, time.time())
            if scan[1] == "processing"]


def _dead_letter_one(bootstrap: str, topic: str) -> None:
    """A record no stage can decode, as a broken producer would write it."""
    producer = new_producer(KafkaSettings(bootstrap_servers=bootstrap), {})
    producer.produce(topic, key=b"garbage", value=b"this is not an event")
    assert producer.flush(30) == 0


def _panels_without_data(prometheus: Prometheus, seen: list[dict[str, Any]]) -> list[str]:
    """Each query as Grafana runs it: instant ones at now over the test's range, the others
    as a range query over the test with a 1 s step. Data = at least one finite number."""
    now = time.time()
    test_range = f"{math.ceil(now - prometheus.started) + 5}s"
    board = json.loads(DASHBOARD.read_text())
    empty: list[str] = []
    known_names: dict[str, bool] = {}
    for _row, panels in rows(board):
        for panel in panels:
            for target in panel["targets"]:
                expr = (target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                        .replace("$__range", test_range).replace("$__interval", "1s"))
                if target.get("instant"):
                    data = prometheus.api("query", query=expr, time=f"{now}")
                    values = [s["value"][1] for s in data["result"]]
                else:
                    data = prometheus.api("query_range", query=expr, start=f"{prometheus.started}",
                                          end=f"{now}", step="1")
                    values = [v[1] for s in data["result"] for v in s["values"]]
                finite = [float(v) for v in values if math.isfinite(float(v))]
                seen.append({"panel": panel["title"], "ref": target["refId"], "expr": expr,
                             "series": len(data["result"]),
                             "last": finite[-1] if finite else None})
                if not finite:
                    missing = [name for name in _names(expr)
                               if not known_names.setdefault(name, _has_series(prometheus, name))]
                    why = f" (no series at all: {missing})" if missing else ""
                    empty.append(f"{panel['title']} / {target['refId']}: {expr}{why}")
    return empty


def _names(expr: str) -> list[str]:
    return sorted(set(re.findall(r"\b((?:katagate|process)_[a-z_]+)", expr)))


def _has_series(prometheus: Prometheus, name: str) -> bool:
    return bool(prometheus.api("series", **{"match[]": name, "start": f"{prometheus.started}"}))


def _assert_rules_evaluate(prometheus: Prometheus) -> None:
    alerts = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    expected = {rule["alert"] for group in alerts["groups"] for rule in group["rules"]}

    def evaluated() -> list[dict[str, Any]] | None:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return rules if all(rule["health"] != "unknown" for rule in rules) else None

    rules = wait_for(evaluated, 30, "every alert rule evaluated")
    assert {rule["name"] for rule in rules} == expected
    broken = [(rule["name"], rule["health"], rule.get("lastError")) for rule in rules
              if rule["health"] != "ok"]
    assert not broken, f"alert rules failing to evaluate: {broken}"
