"""The package as an operator installs it: its version, its licence, the lock files CI and the
image install from, and what a production install (no extras) can import."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from katagate.cli import main

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The Apache License 2.0 as the Apache Software Foundation publishes it, appendix included.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
# Which lock installs which extras (scripts/venv.sh, deploy/Dockerfile).
LOCKS = {
    "requirements.lock": ["emulator"],
    "requirements-dev.lock": ["dev", "test", "emulator", "bench"],
}


def _name(requirement: str) -> str:
    """A requirement's project name, normalised as PEP 503 does."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _pins(lock: str) -> dict[str, str]:
    text = (REPO / lock).read_text()
    return {_name(m.group(1)): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.M)}


def test_given_the_installed_distribution_when_version_is_asked_then_it_prints_its_version(
        capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"katagate {version('katagate')}\n"
    assert version("katagate") == PYPROJECT["project"]["version"]


def test_given_the_checkout_then_license_is_the_full_apache_2_text_and_declared():
    assert hashlib.sha256((REPO / "LICENSE").read_bytes()).hexdigest() == APACHE_2_SHA256
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_given_pyproject_then_each_lock_pins_every_dependency_with_hashes(lock: str):
    """A dependency added to pyproject.toml without regenerating the lock fails here."""
    project = PYPROJECT["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in LOCKS[lock]:
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    pins = _pins(lock)
    assert wanted - set(pins) == set(), f"{lock} lacks these: regenerate it (docs/decisions/0004)"
    # Each pin with the lines that follow it (its hashes, then the comments naming who wants it).
    entries = re.findall(r"^[A-Za-z0-9][^\n]*==[^\n]*(?:\n[ #][^\n]*)*",
                         (REPO / lock).read_text(), re.M)
    assert len(entries) == len(pins)
    assert all("--hash=sha256:" in entry for entry in entries)


def test_given_both_locks_then_they_agree_on_every_version_they_share():
    run, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert set(run) <= set(dev)
    assert {name: dev[name] for name in run} == run


def test_given_no_extras_when_every_stage_and_the_cli_load_then_nothing_needs_an_extra():
    """A production install has none of the extras: the CLI and every stage's modules load
    without them (the emulator's server, which needs pyOpenSSL, is loaded only by `serve`)."""
    extras = [_name(r) for extra in ("emulator", "test", "bench")
              for r in PYPROJECT["project"]["optional-dependencies"][extra]]
    assert extras == ["pyopenssl", "testcontainers", "matplotlib"]
    script = """
import importlib, pkgutil, sys
for blocked in ("OpenSSL", "testcontainers", "matplotlib"):
    sys.modules[blocked] = None  # an import of it raises ImportError
import katagate.cli
katagate.cli.build_parser()
for module in pkgutil.walk_packages(importlib.import_module("katagate").__path__, "katagate."):
    if module.name.rsplit(".", 1)[-1] != "__main__" and module.name not in (
            "katagate.kata_emulator.server", "katagate.kata_emulator.tls"):
        importlib.import_module(module.name)
print("loaded")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("loaded")


def test_given_no_emulator_extra_when_the_emulator_serves_then_it_names_the_extra(tmp_path: Path):
    script = f"""
import sys
sys.modules["OpenSSL"] = None  # as if pyOpenSSL were not installed
from katagate.cli import main
sys.exit(main(["kata-emulator", "serve", "--state", {str(tmp_path)!r}, "--port", "0"]))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr == ("kata-emulator: serving needs pyOpenSSL, which katagate's emulator "
                           "extra installs: pip install 'katagate[emulator]'\n")
