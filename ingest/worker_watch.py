"""What ingest's supervisor does with one of its SMTP workers at each round: pure over what it
remembers of the worker (`Watch`), what the round saw (`Seen`) and the time; ingest/workers.py
carries the step out.

- A worker that exited is started again after katagate/restart_policy.py's backoff; more
  failures than the policy allows within its window give up (the stage stops, for the service
  manager to act on).
- A worker whose /healthz has said stalled for `STALLED_FOR` times `health_stall_s` (60 s by
  default, as deploy/k8s/ingest.yaml's liveness probe: three failures 20 s apart) is killed
  (its loop cannot drain; a message it had not answered `250` was not accepted, and its sender
  retries). Not sooner: a writer waiting on a broker that does not answer says stalled too,
  and a restart brings no broker back. So is one whose listener has not answered for
  `health_stall_s` (stopped, swapping, or its interpreter held), or that has not answered
  within the time a start may take.
- Otherwise its /readyz is its condition in the supervisor's /readyz.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from katagate.eventlog.health import Condition
from katagate.restart_policy import ChildRecord, GiveUp, RestartPolicy, on_failure

STALLED_FOR = 2.0  # times health_stall_s

Action = Literal["none", "start", "kill", "give_up"]


@dataclass(frozen=True)
class Seen:
    exited: int | None  # its exit status; None while it runs
    healthz: int = 0  # the status of its /healthz; 0: no answer
    readyz: int = 0
    state: str = ""  # its /readyz body's status, or why it did not answer


@dataclass(frozen=True)
class Watch:
    started_at: float
    record: ChildRecord = field(default_factory=ChildRecord)
    restart_at: float | None = None  # exited: started again at this time
    silent_since: float | None = None  # its listener has not answered since
    stalled_since: float | None = None  # its /healthz has said stalled since
    heard: bool = False  # its listener has answered since its start


@dataclass(frozen=True)
class Step:
    watch: Watch
    action: Action
    condition: Condition
    why: str = ""


def judge(watch: Watch, seen: Seen, now: float, policy: RestartPolicy, stall_s: float,
          start_s: float) -> Step:
    """`stall_s`: the stage's health_stall_s; `start_s`: how long a worker may take to start."""
    if watch.restart_at is not None:
        if now < watch.restart_at:
            return Step(watch, "none", Condition(False, "restarting",
                                                 f"in {watch.restart_at - now:.0f} s"))
        return Step(Watch(now, watch.record), "start", Condition(False, "starting"))
    if seen.exited is not None:
        decision = on_failure(policy, watch.record, watch.started_at, now)
        if isinstance(decision, GiveUp):
            return Step(watch, "give_up", Condition(False, "failed"),
                        f"exited with {seen.exited}, failure {decision.failures} within "
                        f"{policy.window_s:.0f} s")
        why = f"exited with {seen.exited}; started again in {decision.after_s:.0f} s"
        return Step(replace(watch, record=decision.record, restart_at=now + decision.after_s),
                    "none", Condition(False, "restarting", why), why)
    if seen.healthz == 503:
        since = now if watch.stalled_since is None else watch.stalled_since
        if now - since >= STALLED_FOR * stall_s:
            why = f"its /healthz has said stalled for {now - since:.0f} s: killed"
            return Step(replace(watch, stalled_since=None), "kill",
                        Condition(False, "stalled", why), why)
        return Step(replace(watch, heard=True, stalled_since=since, silent_since=None), "none",
                    Condition(False, "stalled", seen.state))
    if seen.healthz == 0:
        if watch.silent_since is None and not watch.heard:  # still starting
            if now - watch.started_at > start_s:
                why = f"its listener did not answer within {start_s:.0f} s of its start: killed"
                return Step(watch, "kill", Condition(False, "not_answering", why), why)
            return Step(watch, "none", Condition(False, "starting", seen.state))
        since = now if watch.silent_since is None else watch.silent_since
        if now - since > stall_s:
            why = f"its listener has not answered for {now - since:.0f} s: killed"
            return Step(replace(watch, silent_since=None), "kill",
                        Condition(False, "not_answering", why), why)
        return Step(replace(watch, silent_since=since, stalled_since=None), "none",
                    Condition(False, "not_answering", seen.state))
    return Step(replace(watch, heard=True, silent_since=None, stalled_since=None), "none",
                Condition(seen.readyz == 200, seen.state or "unknown"))
