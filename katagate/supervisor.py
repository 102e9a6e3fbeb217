"""Child processes `katagate up` owns: started with their environment, started again when one
dies (katagate/up_watch.py decides when), stopped tier by tier on Ctrl-C or `katagate down`
(katagate/stop_tiers.py)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from katagate.stop_tiers import Tier

# glibc gives each thread that allocates its own arena, up to 8 per core, and rarely returns
# their free pages. The decider (about twenty threads) reached 383 MB after 100,000 messages
# with no more Python objects; with two arenas it levelled off at 284 MB from 50,000 on.
# Set in the environment, the operator's value wins.
CHILD_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}
LAST_TIER_S = 10.0  # children no tier names


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_prefix: str | None = None  # a stdout line starting with this says it is up
    process: subprocess.Popen[str] | None = None
    ready_line: str = ""
    started_at: float = 0.0  # time.monotonic() of its last start


class Supervisor:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[Child] = []
        # Variables for the child of one name only, over its own (katagate.toml's
        # [logging.STAGE] tables).
        self.named_env: dict[str, dict[str, str]] = {}
        self._lines: queue.Queue[str] = queue.Queue()  # the ready-line reader of the last start

    def start(self, child: Child, timeout_s: float = 60.0,
              stop: threading.Event | None = None) -> Child:
        """Started, and once it has a ready prefix, ready: else RuntimeError (it is killed if
        it still runs). `stop` set ends a wait for the ready line early."""
        self._spawn(child)
        self.children.append(child)
        self._wait_ready(child, timeout_s, stop)
        return child

    def restart(self, child: Child, timeout_s: float = 60.0,
                stop: threading.Event | None = None) -> None:
        """The same child started again (its argv and environment), ready as at its start."""
        self._spawn(child)
        self._wait_ready(child, timeout_s, stop)

    def _spawn(self, child: Child) -> None:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        log = child.log.open("a")
        child.process = subprocess.Popen(  # noqa: S603 - our own argv
            child.argv, cwd=self.root, env={**CHILD_DEFAULTS, **os.environ, **child.env,
                                           **self.named_env.get(child.name, {})},
            text=True,
            stdout=subprocess.PIPE if child.ready_prefix else log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        child.started_at = time.monotonic()
        child.ready_line = ""
        self._lines = queue.Queue()
        if child.ready_prefix and child.process.stdout is not None:
            lines = self._lines
            stdout = child.process.stdout

            def pump() -> None:
                for line in stdout:
                    lines.put(line)
                    log.write(line)
                    log.flush()

            threading.Thread(target=pump, daemon=True).start()
        else:
            log.close()  # the child holds its own descriptor

    def _wait_ready(self, child: Child, timeout_s: float, stop: threading.Event | None) -> None:
        process, lines = child.process, self._lines
        if not child.ready_prefix or process is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            if process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {process.returncode}; "
                                   f"see {child.log}")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line.startswith(child.ready_prefix):
                child.ready_line = line.strip()
                return
        if process.poll() is None:  # not ready: not left running beside its next start
            process.kill()
            process.wait()
        raise RuntimeError(f"{child.name} did not report ready in {timeout_s:.0f} s; "
                           f"see {child.log}")

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.process is not None and c.process.poll() is not None]

    def stop_in_tiers(self, tiers: list[Tier], say: Callable[[str], None] = print) -> None:
        """Each tier's children SIGTERMed together and waited for, up to the tier's time (then
        SIGKILL, said in one line), before the next tier; children no tier names go last."""
        named = {name for tier in tiers for name in tier.names}
        rest = tuple(c.name for c in self.children if c.name not in named)
        for tier in [*tiers, Tier(rest, LAST_TIER_S)]:
            group = [(c, c.process) for c in self.children
                     if c.name in tier.names and c.process is not None]
            for _, process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + tier.timeout_s
            for child, process in group:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    say(f"{child.name} did not stop within {tier.timeout_s:.0f} s of SIGTERM; "
                        f"killed (SIGKILL); see {child.log}")
                    process.kill()
                    process.wait()


def python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]
