"""The gateway a restart round works on: `katagate up` in a state folder of its own, as the
mail-path benchmark configures and starts it (bench/mailpath.py), stopped with `katagate down`
and started again on the same folder; its stages found by their command lines under `up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import mailpath, processes


class Gateway:
    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        """`env`: `up`'s environment (None: bench/mailpath.py's, a broker of its own)."""
        self.folder, self.env = folder, env
        self.ports = mailpath.write_config(folder)
        self.process: subprocess.Popen[str] | None = None
        self.starts_s: list[float] = []  # each `up` until it said it is up: first, restarts
        self.said: list[str] = []  # what `up` printed after that (why it stopped, say)

    @property
    def sink_dir(self) -> Path:
        return self.folder / "state" / "sink"

    def start(self) -> float:
        """`katagate up`; the seconds until it said it is up."""
        first = not self.starts_s
        began = time.monotonic()
        process = mailpath.start_up(self.folder, env=self.env, accept_sensor=first)
        self.starts_s.append(round(time.monotonic() - began, 1))
        if first:  # mail waits for KATA otherwise; a restart reconnects by itself
            mailpath.wait_connected(self.folder)
        self.process = process
        # Read the rest of its output, or a full pipe would block it.
        threading.Thread(target=self._read, args=(process,), daemon=True).start()
        return self.starts_s[-1]

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.said.append(line.rstrip("\n"))

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def down(self, timeout_s: float = 120) -> float:
        """`katagate down`; the seconds until `up` exited (every child stopped)."""
        began = time.monotonic()
        env = self.env if self.env is not None else {
            k: v for k, v in os.environ.items() if not k.startswith("KATAGATE_")}
        subprocess.run([sys.executable, "-m", "katagate", "down", "--config",
                        str(self.folder / "katagate.toml")], cwd=mailpath.ROOT, env=env,
                       capture_output=True, timeout=timeout_s, check=False)
        self.wait_exited(timeout_s)
        return round(time.monotonic() - began, 1)

    def wait_exited(self, timeout_s: float) -> None:
        if self.process is not None:
            self.process.wait(timeout=timeout_s)

    def stage_pid(self, stage: str) -> int | None:
        """The process of `stage` (processes.STAGES) that `up` runs now, if any."""
        if not self.running():
            return None
        assert self.process is not None
        return next((pid for pid, name in processes.children(self.process.pid).items()
                     if name == stage), None)

    def kill(self, stage: str) -> int:
        """kill -9 the stage's process; its pid."""
        pid = self.stage_pid(stage)
        if pid is None:
            raise RuntimeError(f"no {stage} process under katagate up")
        os.kill(pid, signal.SIGKILL)
        return pid

    def after_kill(self, stage: str, killed: int, timeout_s: float) -> str:
        """What `up` did about a killed child: "gateway stopped" (it stopped everything and
        exited), "restarted" (a new process of the stage runs), or "nothing" by `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                return "gateway stopped"
            pid = self.stage_pid(stage)
            if pid is not None and pid != killed:
                return "restarted"
            time.sleep(0.2)
        return "nothing"

    def close(self) -> None:
        if self.running():
            self.down()
        if self.running():
            assert self.process is not None
            self.process.terminate()
            self.process.wait(timeout=60)
