"""`katagate ingest run` with `processes` > 1: SMTP workers sharing one listening port, under
this process, which starts them, restarts one that dies, and answers for them as one stage.

- **The port.** Each worker listens with SO_REUSEPORT, and the kernel spreads new connections
  among the listeners by their addresses' hash. This process holds the port bound but not
  listening (it takes no connection), so that port 0 names one free port for all, and no other
  program takes it while a worker restarts. Only a process of the same user may join the port.
- **A worker** is `katagate ingest run --worker N`, with its share of the caps
  (ingest/worker_plan.py) and a loopback metrics listener; its first lines on stdout name its
  addresses. It stops if this process is gone (`watch_parent`).
- **Supervision.** Every second: a worker that exited is started again after the backoff of
  katagate/restart_policy.py (more than its limit of failures in its window stops the stage,
  exit 1, for the service manager); a worker whose /healthz says stalled is killed, then
  restarted (its loop cannot drain; a message it had not answered was not accepted); each
  worker's /readyz is this process's `worker-N` condition.
- **Metrics and probes** on `metrics_host:metrics_port`: the workers' metrics with a `worker`
  label (ingest/worker_metrics.py), `/readyz` ready when every worker is, `/healthz` live while
  this loop runs.
- **Stop.** SIGTERM or SIGINT: each worker drains (ingest/drain.py) and is waited for, up to
  `drain_timeout_s` + `commit_timeout_s` and a margin, then killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from katagate.eventlog.health import Condition, Health
from katagate.eventlog.health_server import serve_health
from katagate.ingest.settings import IngestSettings
from katagate.ingest.worker_metrics import WorkerMetrics, get
from katagate.ingest.worker_plan import worker_env
from katagate.restart_policy import ChildRecord, GiveUp, RestartPolicy, on_failure

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # the control log read and the producers up, for every worker
STOP_MARGIN_S = 5.0
PROBE_TIMEOUT_S = 2.0
ROUND_S = 1.0


def reserve(host: str, port: int) -> list[socket.socket]:
    """The listening address bound (not listening) with SO_REUSEPORT, for every address `host`
    names, all on one port (port 0: the first one's)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("processes > 1 needs SO_REUSEPORT, which this system lacks")
    held: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE):
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if held[1:]:
                address = (address[0], held[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError:
        for sock in held:
            sock.close()
        raise
    return held


def watch_parent(stop: threading.Event, parent: int) -> threading.Thread:
    """A worker's thread: `stop` set (a drain) once the supervisor `parent` is gone, so that a
    worker never serves on alone after its supervisor was killed."""
    def watch() -> None:
        while not stop.wait(ROUND_S):
            if os.getppid() != parent:
                log.warning("the ingest supervisor (pid %d) is gone: stopping", parent)
                stop.set()
    thread = threading.Thread(target=watch, name="watch-supervisor", daemon=True)
    thread.start()
    return thread


@dataclass
class Worker:
    index: int
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    smtp: tuple[str, int] | None = None
    metrics: tuple[str, int] | None = None
    listening: threading.Event = field(default_factory=threading.Event)
    record: ChildRecord = field(default_factory=ChildRecord)
    restart_at: float | None = None  # dead, started again at this monotonic time

    @property
    def name(self) -> str:
        return f"worker-{self.index}"

    def start(self) -> None:
        self.smtp = self.metrics = None
        self.listening.clear()
        self.process = subprocess.Popen(  # noqa: S603 - our own argv
            [sys.executable, "-m", "katagate", "ingest", "run", "--worker", str(self.index)],
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            text=True)
        self.started_at = time.monotonic()
        self.restart_at = None
        threading.Thread(target=self._read, args=(self.process,), name=f"{self.name}-stdout",
                         daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        """The worker's addresses from its stdout (ingest/run.py prints them)."""
        if process.stdout is None:
            return
        for line in process.stdout:
            name, _, address = line.strip().partition("=")
            host, _, port = address.rpartition(":")
            if not port.isdigit():
                continue
            if name == "ingest-metrics":
                self.metrics = (host, int(port))
            elif name == "smtp":
                self.smtp = (host, int(port))
                self.listening.set()

    def probe(self, path: str) -> tuple[int, str]:
        """(status, the body's `status`) of the worker's /healthz or /readyz; (0, why) when it
        does not answer."""
        if self.metrics is None:
            return 0, "starting"
        try:
            status, body = get(self.metrics, path, PROBE_TIMEOUT_S)
            answer = json.loads(body or b"{}")
        except (OSError, ValueError) as exc:
            return 0, f"not answering: {exc}"
        return status, str(answer.get("status", "")) if isinstance(answer, dict) else ""


class Workers:
    def __init__(self, settings: IngestSettings, host: str, port: int,
                 policy: RestartPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or RestartPolicy()
        self.workers = [Worker(i, worker_env(settings, i, host, port))
                        for i in range(settings.processes)]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkerMetrics(self._metrics_addresses))
        self.restarts = Counter("katagate_ingest_worker_restarts",
                                "SMTP worker processes started again after they died or stalled",
                                registry=self.registry)

    def _metrics_addresses(self) -> dict[str, tuple[str, int]]:
        return {str(w.index): w.metrics for w in self.workers
                if w.metrics is not None and w.process is not None and w.process.poll() is None}

    def start(self, stop: threading.Event) -> bool:
        """Every worker started and listening (True), or one failed or `stop` came (False)."""
        for worker in self.workers:
            worker.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        for worker in self.workers:
            while not worker.listening.wait(0.2):
                process = worker.process
                if process is not None and process.poll() is not None:
                    log.error("ingest %s exited with %s before it listened",
                              worker.name, process.returncode)
                    return False
                if stop.is_set() or time.monotonic() > deadline:
                    if not stop.is_set():
                        log.error("ingest %s did not listen within %.0f s", worker.name,
                                  START_TIMEOUT_S)
                    return False
        return True

    def supervise(self, stop: threading.Event, health: Health) -> int:
        """Rounds until `stop` (0) or a worker failed more than the policy allows (1)."""
        loop = health.part("workers")
        loop.ready("supervising", f"{len(self.workers)} workers")
        while not stop.wait(ROUND_S):
            loop.beat()
            now = time.monotonic()
            for worker in self.workers:
                if not self._round(worker, health, now):
                    return 1
        return 0

    def _round(self, worker: Worker, health: Health, now: float) -> bool:
        process = worker.process
        if process is None:
            return True
        if worker.restart_at is not None:
            if now >= worker.restart_at:
                worker.start()
                self.restarts.inc()
            return True
        if process.poll() is not None:
            decision = on_failure(self.policy, worker.record, worker.started_at, now)
            if isinstance(decision, GiveUp):
                log.error("ingest %s failed %d times within %.0f s: stopping the stage",
                          worker.name, decision.failures, self.policy.window_s)
                return False
            worker.record, worker.restart_at = decision.record, now + decision.after_s
            log.error("ingest %s exited with %s; started again in %.0f s", worker.name,
                      process.returncode, decision.after_s)
            health.set(worker.name, Condition(False, "restarting",
                                              f"exited with {process.returncode}"))
            return True
        status, state = worker.probe("/healthz")
        if status == 503:
            log.error("ingest %s is stalled (%s): killed, to be started again", worker.name,
                      state)
            process.kill()
            return True
        status, state = worker.probe("/readyz")
        health.set(worker.name, Condition(status == 200, state or "ready"))
        return True

    def stop(self) -> None:
        """SIGTERM to each worker (each drains), then waited for; killed past the bound."""
        bound = self.settings.drain_timeout_s + self.settings.commit_timeout_s + STOP_MARGIN_S
        running = [w.process for w in self.workers
                   if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + bound
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("ingest worker (pid %d) did not stop within %.0f s: killed",
                          process.pid, bound)
                process.kill()
                process.wait()


def run_workers(settings: IngestSettings, stop: threading.Event) -> int:
    """The supervisor's life: reserve the port, start the workers, say where it listens, keep
    them running until `stop`; the exit status."""
    held = reserve(settings.host, settings.port)
    host, port = held[0].getsockname()[:2]
    workers = Workers(settings, settings.host, int(port))
    health = Health(settings.health_stall_s)
    for worker in workers.workers:
        health.part(worker.name, loop=False)
    metrics = serve_health(settings.metrics_host, settings.metrics_port, health,
                           workers.registry)
    if metrics is not None:
        print("ingest-metrics={}:{}".format(*metrics.address), flush=True)
    try:
        if not workers.start(stop):
            return 0 if stop.is_set() else 1
        log.info("smtp=%s:%d with %d workers", host, port, len(workers.workers))
        print(f"smtp={host}:{port}", flush=True)
        return workers.supervise(stop, health)
    finally:
        workers.stop()
        if metrics is not None:
            metrics.close()
        for sock in held:
            sock.close()
