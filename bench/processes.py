"""The gateway's processes as `katagate up` started them: which stage each is, their memory
and CPU time (from /proc); and any process tree's CPU time by process name (a Postfix
instance's master and its children)."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAGES = ("ingest", "scanner", "decider", "projector", "console", "audit")


def children(parent: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        words = [a.decode(errors="replace") for a in args]
        stage = next((s for s in STAGES if s in words), None)
        if stage is None and ("kata-emulator" in words or "katagate.kata_emulator" in words):
            stage = "emulator"
        if stage is None and any("java" in w for w in words[:1]):
            stage = "broker"
        if stage is None and "sink" in words:
            stage = "sink"
        if stage is not None:
            found[int(entry.name)] = stage
    return found


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int, reaped: bool = False) -> float:
    """CPU seconds (user + system) so far; with `reaped`, plus those of the children it has
    waited for (cutime + cstime): a process that exited is counted in its parent's."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def children_cpu(parent: int) -> dict[int, tuple[str, float]]:
    """pid -> (process name, CPU seconds so far) of every live child of `parent`."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return found


def up_pid(folder: Path) -> int:
    config = str(folder / "katagate.toml")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if config.encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    raise RuntimeError("katagate up is not running")


def usage(parent: int) -> dict[str, dict[str, float]]:
    """Resident memory (MB) and CPU seconds so far, per stage."""
    out: dict[str, dict[str, float]] = {}
    for pid, stage in children(parent).items():
        try:
            fields = _stat(pid)
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss_kib = _vm_rss(status)
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        # A stage's own children too: ingest's SMTP workers ([ingest] processes > 1).
        for child, (_, child_cpu) in children_cpu(pid).items():
            cpu += child_cpu
            rss_kib += _rss_kib(child)
        out[stage] = {"rss_mb": round(rss_kib / 1024, 1), "cpu_s": round(cpu, 2)}
    return out


def _vm_rss(status: str) -> int:
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def _rss_kib(pid: int) -> int:
    try:
        return _vm_rss(Path(f"/proc/{pid}/status").read_text())
    except (OSError, StopIteration):  # gone, or a zombie (no VmRSS)
        return 0


def _threads(pid: int) -> list[tuple[str, float]]:
    """(name, CPU seconds so far) of each of a process's threads; one that ended is left out."""
    found: list[tuple[str, float]] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found.append((comm, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS))
    return found


def threads_cpu_s(pid: int, name_prefix: str | tuple[str, ...]) -> float:
    """CPU seconds so far of a process's threads whose name starts with `name_prefix`."""
    return sum(cpu for comm, cpu in _threads(pid) if comm.startswith(name_prefix))


# What a thread's name (its 15-character comm) says it does. librdkafka names its threads
# rdk:main, rdk:broker<id>...; the broker's request handlers and network threads are
# data-plane-kafka-*; the JVM's compilers "C1/C2 CompilerThre". Python names none of its own.
THREAD_KINDS = (("rdk:", "librdkafka"), ("data-plane-kafk", "request handling"),
                ("C1 CompilerThre", "JIT compiler"), ("C2 CompilerThre", "JIT compiler"))


def thread_kinds_cpu_s(pid: int, rest: str = "python") -> dict[str, float]:
    """CPU seconds so far of a process's threads by THREAD_KINDS, the others under `rest`."""
    out: dict[str, float] = {}
    for comm, cpu in _threads(pid):
        kind = next((k for prefix, k in THREAD_KINDS if comm.startswith(prefix)), rest)
        out[kind] = out.get(kind, 0.0) + cpu
    return out


def usage_by_thread(parent: int) -> dict[str, float]:
    """CPU seconds so far per "<stage> <thread kind>" of every process `parent` started."""
    out: dict[str, float] = {}
    for pid, stage in children(parent).items():
        for process in (pid, *children_cpu(pid)):  # with ingest's SMTP workers
            try:
                kinds = thread_kinds_cpu_s(process, "other" if stage == "broker" else "python")
            except OSError:  # the process ended
                continue
            for kind, seconds in kinds.items():
                out[f"{stage} {kind}"] = out.get(f"{stage} {kind}", 0.0) + seconds
    return out
