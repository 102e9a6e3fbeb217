"""`katagate ingest run` with `processes` > 1: SMTP workers sharing one listening port, under
this process, which makes their listeners, starts them, restarts one that fails, and answers
for them as one stage.

- **The port.** This process makes one listening socket per worker (per address `host`
  names), all on the one port with SO_REUSEPORT, and the kernel spreads new connections among
  them by their addresses' hash. It keeps them open and hands each worker its own (its file
  descriptors), so the port is always listening: no program of another user can bind it, even
  while a worker restarts, and the connections waiting for a worker that died wait for the
  worker started in its place rather than being reset. A process of the same user can still
  join a SO_REUSEPORT port and take a share: run ingest as a user of its own
  (ingest/README.md, "Worker processes").
- **A worker** is `katagate ingest run --worker N`, with its share of the caps
  (ingest/worker_plan.py) and a loopback metrics listener; its first lines on stdout name its
  addresses. It stops (a drain) as soon as this process is gone (`follow_supervisor`).
- **Supervision.** Each second every worker's /healthz and /readyz are read at once, and
  ingest/worker_watch.py decides: restart after a backoff, kill, give up, or the worker's
  condition in this process's /readyz.
- **Metrics and probes** on `metrics_host:metrics_port`: the workers' metrics with a `worker`
  label (ingest/worker_metrics.py); `/readyz` ready while every worker is (each one's check
  shown: a worker starting, restarting or not writing makes the stage not ready until it is
  again), `draining` once stopping; `/healthz` live while this loop runs.
- **Stop.** SIGTERM or SIGINT: each worker drains (ingest/drain.py) and is waited for, up to
  `drain_timeout_s` + `commit_timeout_s` + the margin `katagate up` gives a stage, then killed.
"""

from __future__ import annotations

import ctypes
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
from katagate.ingest import shared_counts
from katagate.ingest.settings import IngestSettings
from katagate.ingest.shared_counts import SharedCounts
from katagate.ingest.worker_metrics import WorkerMetrics, fetch_each
from katagate.ingest.worker_plan import worker_env
from katagate.ingest.worker_watch import Seen, Watch, judge
from katagate.restart_policy import RestartPolicy
from katagate.stop_tiers import MARGIN_S

log = logging.getLogger(__name__)

BACKLOG = 100  # asyncio's, as a single ingest listens with
START_GRACE_S = 60.0  # over control_catchup_s: the broker reached, the producers up
ROUND_S = 1.0
PROBE_TIMEOUT_S = 2.0
PR_SET_PDEATHSIG = 1


def listeners(host: str, port: int, count: int) -> list[list[socket.socket]]:
    """`count` sets of listening sockets, one socket a set for every address `host` names, all
    on one port (port 0: the first one's) with SO_REUSEPORT."""
    if not hasattr(socket, "SO_REUSEPORT") or not hasattr(os, "memfd_create"):
        raise OSError("processes > 1 needs SO_REUSEPORT and memfd_create (Linux)")
    addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    made: list[list[socket.socket]] = []
    try:
        for _ in range(count):
            made.append([])
            for family, kind, proto, _, address in addresses:
                sock = socket.socket(family, kind, proto)
                made[-1].append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if len(made) > 1 or len(made[-1]) > 1:
                    address = (address[0], made[0][0].getsockname()[1], *address[2:])
                sock.bind(address)
                sock.listen(BACKLOG)
    except OSError:
        for sock in (s for group in made for s in group):
            sock.close()
        raise
    return made


def follow_supervisor(stop: threading.Event, supervisor: int) -> None:
    """A worker's first step: SIGTERM (a drain) once its supervisor is gone, from the kernel
    (PR_SET_PDEATHSIG) and from a thread that checks each second; gone already: at once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the thread alone
        pass

    def watch() -> None:
        while os.getppid() == supervisor:
            if stop.wait(ROUND_S):
                return
        log.warning("the ingest supervisor (pid %d) is gone: stopping", supervisor)
        stop.set()
    threading.Thread(target=watch, name="follow-supervisor", daemon=True).start()


@dataclass
class Worker:
    index: int
    env: dict[str, str]
    sockets: list[socket.socket]
    argv: list[str]
    watch: Watch = field(default_factory=lambda: Watch(time.monotonic()))
    process: subprocess.Popen[str] | None = None
    metrics: tuple[str, int] | None = None
    listening: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return f"worker-{self.index}"

    def start(self, sessions_fd: int) -> None:
        self.metrics = None
        self.listening.clear()
        fds = [sock.fileno() for sock in self.sockets]
        self.process = subprocess.Popen(  # noqa: S603 - our own argv
            [sys.executable, "-m", "katagate", "ingest", "run", "--worker", str(self.index),
             "--supervisor", str(os.getpid()), "--listen-fds", ",".join(map(str, fds)),
             "--sessions-fd", str(sessions_fd), *self.argv],
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            text=True, pass_fds=[*fds, sessions_fd])
        self.watch = Watch(time.monotonic(), self.watch.record)
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
                self.listening.set()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Workers:
    def __init__(self, settings: IngestSettings, sockets: list[list[socket.socket]],
                 port: int, argv: list[str], policy: RestartPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or RestartPolicy()
        self.start_s = settings.control_catchup_s + START_GRACE_S
        self.workers = [Worker(i, worker_env(settings, i, settings.host, port), sockets[i], argv)
                        for i in range(settings.processes)]
        self.sessions_fd = shared_counts.create(settings.processes)
        self.sessions = SharedCounts(self.sessions_fd, 0)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WorkerMetrics(self._metrics_addresses))
        self.restarts = Counter("katagate_ingest_worker_restarts",
                                "SMTP worker processes started again after they died or stalled",
                                registry=self.registry)

    def _metrics_addresses(self) -> dict[str, tuple[str, int]]:
        """The listeners of the workers running, by index: scraped and probed."""
        return {str(w.index): w.metrics for w in self.workers
                if w.metrics is not None and w.running()}

    def start(self, stop: threading.Event) -> bool:
        """Every worker started and listening (True), or one failed or `stop` came (False)."""
        for worker in self.workers:
            worker.start(self.sessions_fd)
        deadline = time.monotonic() + self.start_s
        for worker in self.workers:
            while not worker.listening.wait(0.2):
                if not worker.running():
                    log.error("ingest %s exited before it listened", worker.name)
                    return False
                if stop.is_set() or time.monotonic() > deadline:
                    if not stop.is_set():
                        log.error("ingest %s did not listen within %.0f s", worker.name,
                                  self.start_s)
                    return False
        return True

    def supervise(self, stop: threading.Event, health: Health) -> int:
        """Rounds until `stop` (0) or a worker failed more than the policy allows (1)."""
        loop = health.part("workers", blocking_s=2 * PROBE_TIMEOUT_S)
        loop.ready("supervising", f"{len(self.workers)} workers")
        while not stop.wait(ROUND_S):
            loop.beat(2 * PROBE_TIMEOUT_S)
            if not self._round(health):
                return 1
        return 0

    def _round(self, health: Health) -> bool:
        probes = fetch_each(self._metrics_addresses(), ("/healthz", "/readyz"), PROBE_TIMEOUT_S)
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            exited = process.poll() if process is not None else None
            live_status, why = _status(probes.get((str(worker.index), "/healthz")))
            ready_status, state = _status(probes.get((str(worker.index), "/readyz")))
            seen = Seen(exited, live_status, ready_status, state or why)
            waiting = worker.watch.restart_at is not None
            step = judge(worker.watch, seen, now, self.policy, self.settings.health_stall_s,
                         self.start_s)
            worker.watch = step.watch
            health.set(worker.name, step.condition)
            if step.why:
                log.error("ingest %s %s", worker.name, step.why)
            if step.action == "give_up":
                return False
            if not waiting and step.watch.restart_at is not None:
                self.sessions.clear(worker.index)  # its sessions ended with it
            if step.action == "kill" and process is not None:
                process.kill()
            elif step.action == "start":
                try:
                    worker.start(self.sessions_fd)
                except OSError as exc:  # no process: the next round takes it as a failure
                    log.error("ingest %s could not be started again: %s", worker.name, exc)
                    continue
                self.restarts.inc()
        return True

    def stop(self, health: Health) -> None:
        """SIGTERM to each worker (each drains), then waited for; killed past the bound. The
        supervisor's /readyz says draining from the start, and its loop still beats."""
        bound = self.settings.drain_timeout_s + self.settings.commit_timeout_s + MARGIN_S
        for name in ("workers", *(w.name for w in self.workers)):
            health.set(name, Condition(False, "draining", f"at most {bound:.0f} s"))
        running = [w.process for w in self.workers if w.process is not None and w.running()]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + bound
        for process in running:
            while process.poll() is None and time.monotonic() < deadline:
                health.beat("workers", 2 * PROBE_TIMEOUT_S)
                try:
                    process.wait(min(ROUND_S, max(0.01, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:
                    continue
            if process.poll() is None:
                log.error("ingest worker (pid %d) did not stop within %.0f s: killed",
                          process.pid, bound)
                process.kill()
                process.wait()


def _status(answer: tuple[int, bytes] | str | None) -> tuple[int, str]:
    """(status, the body's `status`) of a worker's probe; (0, why) when it did not answer."""
    if answer is None:
        return 0, "starting"
    if isinstance(answer, str):
        return 0, answer
    try:
        body = json.loads(answer[1] or b"{}")
    except ValueError:
        return answer[0], ""
    return answer[0], str(body.get("status", "")) if isinstance(body, dict) else ""


def run_workers(settings: IngestSettings, stop: threading.Event, argv: list[str]) -> int:
    """The supervisor's life: the listeners made, the workers started, where it listens said,
    the workers kept running until `stop`; the exit status. `argv`: the workers' options."""
    sockets = listeners(settings.host, settings.port, settings.processes)
    host, port = sockets[0][0].getsockname()[:2]
    workers = Workers(settings, sockets, int(port), argv)
    health = Health(settings.health_stall_s)
    for worker in workers.workers:
        health.part(worker.name, loop=False)
    try:
        metrics = serve_health(settings.metrics_host, settings.metrics_port, health,
                               workers.registry)
    except OSError as exc:
        for sock in (s for group in sockets for s in group):
            sock.close()
        raise OSError(f"the metrics listener {settings.metrics_host}:{settings.metrics_port}: "
                      f"{exc.strerror or exc}") from None
    if metrics is not None:
        print("ingest-metrics={}:{}".format(*metrics.address), flush=True)
    try:
        if not workers.start(stop):
            return 0 if stop.is_set() else 1
        log.info("smtp=%s:%d with %d workers", host, port, len(workers.workers))
        print(f"smtp={host}:{port}", flush=True)
        return workers.supervise(stop, health)
    finally:
        workers.stop(health)
        if metrics is not None:
            metrics.close()
        for sock in (s for group in sockets for s in group):
            sock.close()
        os.close(workers.sessions_fd)
