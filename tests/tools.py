"""Debian tools the tests use (installed by scripts/system-packages, which scripts/test runs)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(*names: str, package: str) -> str:
    """The path of the first of `names` found. Missing: a failure in CI, where the test command
    installs `package`, and a skip elsewhere."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = (f"{' or '.join(names)} is missing: scripts/system-packages installs Debian's "
               f"{package}")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
