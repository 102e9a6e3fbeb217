"""Children of `katagate up` get the allocator setting that keeps their memory flat, unless the
operator set their own."""

from __future__ import annotations

import sys

import pytest

from katagate.supervisor import Child, Supervisor

SHOW = "import os; print('arenas=' + os.environ.get('MALLOC_ARENA_MAX', 'unset'), flush=True)"


def arenas_seen(tmp_path) -> str:
    supervisor = Supervisor(tmp_path)
    try:
        child = supervisor.start(Child("show", [sys.executable, "-c", SHOW], tmp_path / "show.log",
                                       ready_prefix="arenas="))
        return child.ready_line
    finally:
        supervisor.stop_in_tiers([])


def test_a_child_gets_two_malloc_arenas_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert arenas_seen(tmp_path) == "arenas=2"


@pytest.mark.parametrize("value", ["1", "8"])
def test_the_operators_setting_wins(tmp_path, monkeypatch, value):
    monkeypatch.setenv("MALLOC_ARENA_MAX", value)
    assert arenas_seen(tmp_path) == f"arenas={value}"
