"""Fetch Apache Kafka's broker jars from Maven Central into a cache folder, once.

The cache is keyed by a hash of the POM beside this file, so changing the pinned version (or the
logging binding) fetches a fresh classpath while older ones stay usable until removed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from katagate.eventlog.errors import BrokerError

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.9.0"
_COMPLETE = ".complete"


def default_cache_dir() -> Path:
    if explicit := os.environ.get("KATAGATE_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "katagate"


def pom_text() -> str:
    return resources.files("katagate.eventlog.broker").joinpath("pom.xml").read_text(encoding="utf-8")


def kafka_version(pom: str | None = None) -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom or pom_text())
    if match is None:
        raise BrokerError("eventlog/broker/pom.xml names no <kafka.version>")
    return match.group(1)


def classpath_dir(cache_dir: Path) -> Path:
    pom = pom_text()
    digest = hashlib.sha256(pom.encode()).hexdigest()[:12]
    return cache_dir / "kafka" / f"{kafka_version(pom)}-{digest}"


def ensure_classpath(cache_dir: Path | None = None) -> Path:
    """Return the folder of broker jars, fetching it with Maven if it is not cached yet."""
    target = classpath_dir(cache_dir or default_cache_dir())
    if (target / _COMPLETE).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH: it is needed once to fetch the Kafka jars")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Fetch into a scratch folder and rename, so an interrupted fetch never looks complete.
    scratch = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        (scratch / "pom.xml").write_text(pom_text(), encoding="utf-8")
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                mvn, "-B", "-q", "-f", str(scratch / "pom.xml"),
                f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={scratch / 'libs'}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-2000:]
            raise BrokerError(f"fetching the Kafka jars with Maven failed:\n{tail}")
        jars = list((scratch / "libs").glob("*.jar"))
        if not any(j.name.startswith("kafka_2.13-") for j in jars):
            raise BrokerError("Maven finished but copied no kafka_2.13 jar")
        (scratch / _COMPLETE).write_text(f"{len(jars)} jars\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("no Java runtime: install OpenJDK 17 or set JAVA_HOME")
    return java
