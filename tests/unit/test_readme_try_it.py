"""The README's first screen: every command its "Try it" block runs is installed by the run
command (scripts/run-local, through scripts/system-packages) or is katagate itself, so the block
works on a fresh machine right after `bash scripts/run-local`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Debian's Essential packages (coreutils): on every machine the run command runs on.
ESSENTIAL = {"cat"}
KATAGATE = ".venv/bin/katagate"


def try_it_block() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"Try it:\n\n```sh\n(.*?)\n```", readme, re.DOTALL)
    assert match, "README.md has no 'Try it:' sh block"
    return match.group(1).splitlines()


def commands(line: str) -> list[str]:
    """The programs one shell line runs: each pipeline part and each $(...) substitution,
    without variable assignments and the trailing comment."""
    words = shlex.split(line, comments=True)
    text = " ".join(shlex.quote(w) if " " in w else w for w in words)
    found = []
    for part in re.split(r"\$\(|\)|\||&&|;", text):
        names = [w for w in shlex.split(part) if not re.fullmatch(r"[A-Z_]+=.*", w)]
        if names:
            found.append(names[0])
    return found


def run_command_tools() -> set[str]:
    """The tools scripts/run-local has scripts/system-packages install, before it starts."""
    script = (ROOT / "scripts" / "run-local").read_text()
    helper = (ROOT / "scripts" / "system-packages").read_text()
    calls = re.findall(r"^bash scripts/system-packages ([a-z -]+?)\s*(?:#.*)?$", script,
                       re.MULTILINE)
    tools = {tool for call in calls for tool in call.split()}
    installable = set(re.findall(r"^need (\S+) ", helper, re.MULTILINE))
    assert tools <= installable, f"system-packages cannot install {tools - installable}"
    return tools


def test_given_the_readme_try_it_block_then_each_command_is_installed_by_run_local() -> None:
    # Given the commands the block runs, and what the run command installs
    used = {name for line in try_it_block() for name in commands(line)}
    installed = run_command_tools()
    # Then each is katagate, installed by the run command, or on every machine
    assert "swaks" in used  # the block is the one this test is about
    missing = sorted(used - installed - ESSENTIAL - {KATAGATE})
    assert missing == [], f"Try it uses {missing}, which scripts/run-local does not install"


def test_given_a_line_with_substitution_and_comment_then_its_commands_are_found() -> None:
    line = 'TOKEN=$(.venv/bin/katagate projector token create me)   # a token'
    assert commands(line) == [KATAGATE]
    assert commands("curl -s -H 'A: $T' x | jq .  # c") == ["curl", "jq"]
