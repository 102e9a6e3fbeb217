"""`katagate up` watching its children: one that dies is started again after its backoff, and
the gateway stops only when one keeps failing (katagate/restart_policy.py decides; this acts,
says it in one line each time and counts it). Local runs only: in production systemd or
Kubernetes restart the stages (docs/PRODUCTION.md)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from katagate.eventlog.health import Health
from katagate.eventlog.health_server import HealthServer
from katagate.restart_policy import ChildRecord, GiveUp, RestartPolicy, on_failure
from katagate.supervisor import Child, Supervisor

# `up`'s own registry: its /metrics shows its restarts, not the stages' figures at zero that
# importing their modules registers in the default one.
REGISTRY = CollectorRegistry()
RESTARTS = Counter("katagate_up_child_restarts_total",
                   "Children `katagate up` started again after they died or did not become "
                   "ready", ["child"], registry=REGISTRY)


def serve_up_metrics(port: int) -> HealthServer:
    """`up`'s /metrics (and /healthz, /readyz: it has no parts, so always 200) on loopback."""
    return HealthServer("127.0.0.1", port, Health(), REGISTRY)


def exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def watch(supervisor: Supervisor, stop: threading.Event, policy: RestartPolicy,
          say: Callable[[str], None] = print) -> int:
    """Until asked to stop (0), or until a child fails more than the policy allows (1)."""
    for child in supervisor.children:
        RESTARTS.labels(child.name)  # each child's series from 0, so the first restart counts
    records: dict[str, ChildRecord] = {}
    while not stop.is_set():
        for child in supervisor.dead():
            code = child.process.returncode if child.process else None
            if not _restart(supervisor, child, stop, policy, records, exit_text(code), say):
                return 1
        stop.wait(0.5)
    return 0


def _restart(supervisor: Supervisor, child: Child, stop: threading.Event,
             policy: RestartPolicy, records: dict[str, ChildRecord], why: str,
             say: Callable[[str], None]) -> bool:
    """Started again after its backoff until it is ready; False when the policy gives up."""
    before = child.ready_line
    while True:
        decision = on_failure(policy, records.get(child.name, ChildRecord()), child.started_at,
                              time.monotonic())
        if isinstance(decision, GiveUp):
            say(f"{child.name} failed {decision.failures} times within "
                f"{policy.window_s:.0f} s (last: {why}); see {child.log}; stopping katagate")
            return False
        records[child.name] = decision.record
        say(f"{child.name} stopped ({why}); restarting in {decision.after_s:.0f} s; see "
            f"{child.log}")
        if stop.wait(decision.after_s):
            return True  # stopping anyway: the tiers take it from here
        RESTARTS.labels(child.name).inc()
        try:
            supervisor.restart(child, stop=stop)
            if before and before != child.ready_line:
                # Its port was 0 (a free one): the others were given the address it had.
                say(f"{child.name} now says {child.ready_line!r}, not {before!r}: restart "
                    "katagate for the others to reach it")
            return True
        except RuntimeError as exc:  # did not become ready: a failure like any other
            if stop.is_set():
                return True
            why = f"not ready: {exc}"
