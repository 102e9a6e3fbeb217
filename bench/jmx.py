"""The Kafka broker's own counters (requests by API, records and bytes appended, its CPU time),
read over JMX from the running broker process by bench/KafkaCounters.java: compiled at first
use with the JDK's javac, no jars beyond the JDK. The broker's management agent is started
local-only (loopback, same user) through the Attach API the first time it is read."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().with_name("KafkaCounters.java")
TCP_LISTEN = "0A"  # the socket state LISTEN in /proc/net/tcp


def compiled() -> Path:
    """The folder holding KafkaCounters.class, compiled once per version of the source."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"katagate-kafka-counters-{digest}"
    if not (folder / "KafkaCounters.class").exists():
        javac = shutil.which("javac")
        if javac is None:
            raise RuntimeError("reading the broker's counters needs a JDK (javac)")
        building = Path(tempfile.mkdtemp(prefix="katagate-kafka-counters-"))
        subprocess.run([javac, "-d", str(building), str(SOURCE)], check=True,
                       capture_output=True, timeout=180)
        # Renamed whole: a reader running at the same time never sees a half-built folder.
        try:
            building.rename(folder)
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    return folder


class BrokerCounters:
    """One JMX connection to the broker process `pid`, read as often as asked; a context
    manager (the client JVM ends with it)."""

    def __init__(self, pid: int) -> None:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("reading the broker's counters needs a JDK (java)")
        self._client = subprocess.Popen([java, "-cp", str(compiled()), "KafkaCounters", str(pid)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)

    def read(self) -> dict[str, Any]:
        """The broker's counters now: `requests` (Count per request name, all versions summed),
        `MessagesInPerSec`, `BytesInPerSec`, `BytesOutPerSec` (all topics; and `...ByTopic`),
        and `ProcessCpuTimeNs`."""
        assert self._client.stdin is not None
        assert self._client.stdout is not None
        try:
            self._client.stdin.write("\n")
            self._client.stdin.flush()
        except BrokenPipeError:
            pass  # the client ended: its error is read below
        line = self._client.stdout.readline()
        if not line:
            self.close()
            assert self._client.stderr is not None
            raise RuntimeError(f"reading the broker's counters failed: "
                               f"{self._client.stderr.read().strip()}")
        counters: dict[str, Any] = json.loads(line)
        return counters

    def close(self) -> None:
        if self._client.stdin is not None and not self._client.stdin.closed:
            self._client.stdin.close()  # EOF: the client disconnects and ends
        try:
            self._client.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._client.kill()
            self._client.wait()

    def __enter__(self) -> BrokerCounters:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def listening_pid(port: int) -> int | None:
    """The local process listening on TCP `port` (v4 or v6), or None (not local, or not ours
    to see)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        if any(_link(fd) in wanted for fd in fds):
            return int(entry.name)
    return None


def _link(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed meanwhile
        return ""
