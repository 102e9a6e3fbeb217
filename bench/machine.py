"""The machine's details, printed beside every figure (shared machines are noisy)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess


def machine() -> dict[str, str | int]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            mem_kib = int(info.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    java = subprocess.run(
        [shutil.which("java") or "java", "-version"], capture_output=True, text=True, check=False
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "memory_gib": round(mem_kib / 1024 / 1024),
        "python": platform.python_version(),
        "java": (java.stderr.splitlines() or ["?"])[0],
        "load_avg_1m": f"{os.getloadavg()[0]:.2f}",
    }
