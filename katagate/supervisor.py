"""Child processes `katagate up` owns: started with their environment, watched, stopped in
reverse order on Ctrl-C or `katagate down`."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# glibc gives each thread that allocates its own arena, up to 8 per core, and rarely returns
# their free pages. The decider (about twenty threads) reached 383 MB after 100,000 messages
# with no more Python objects; with two arenas it levelled off at 284 MB from 50,000 on.
# Set in the environment, the operator's value wins.
CHILD_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_prefix: str | None = None  # a stdout line starting with this says it is up
    process: subprocess.Popen[str] | None = None
    ready_line: str = ""


class Supervisor:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[Child] = []
        # Variables for the child of one name only, over its own (katagate.toml's
        # [logging.STAGE] tables).
        self.named_env: dict[str, dict[str, str]] = {}

    def start(self, child: Child, timeout_s: float = 60.0) -> Child:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        log = child.log.open("a")
        child.process = subprocess.Popen(  # noqa: S603 - our own argv
            child.argv, cwd=self.root, env={**CHILD_DEFAULTS, **os.environ, **child.env,
                                           **self.named_env.get(child.name, {})},
            text=True,
            stdout=subprocess.PIPE if child.ready_prefix else log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self.children.append(child)
        if child.ready_prefix and child.process.stdout is not None:
            lines: queue.Queue[str] = queue.Queue()
            stdout = child.process.stdout

            def pump() -> None:
                for line in stdout:
                    lines.put(line)
                    log.write(line)
                    log.flush()

            threading.Thread(target=pump, daemon=True).start()
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if child.process.poll() is not None:
                    raise RuntimeError(f"{child.name} exited with {child.process.returncode}; "
                                       f"see {child.log}")
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    continue
                if line.startswith(child.ready_prefix):
                    child.ready_line = line.strip()
                    return child
            raise RuntimeError(f"{child.name} did not report ready in {timeout_s:.0f} s")
        return child

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.process is not None and c.process.poll() is not None]

    def stop_all(self, timeout_s: float = 30.0) -> None:
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()


def python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]
