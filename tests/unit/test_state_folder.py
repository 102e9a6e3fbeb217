"""The state folder `katagate up` keeps Kafka's data, the projector's database and the keys in:
made 0700, an existing one tightened to 0700, another user's refused before anything starts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from katagate.cli import main
from katagate.state_folder import StateFolderError, prepare_state_folder

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_given_no_state_folder_when_prepared_then_it_is_made_0700_despite_a_loose_umask(tmp_path):
    old = os.umask(0o022)
    try:
        note = prepare_state_folder(tmp_path / "a" / "state")
    finally:
        os.umask(old)
    assert note is None
    assert mode(tmp_path / "a" / "state") == 0o700


def test_given_a_world_readable_state_folder_when_prepared_then_it_is_tightened_and_said(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    note = prepare_state_folder(state)
    assert mode(state) == 0o700
    assert note == f"state folder {state}: mode 0755 tightened to 0700"
    assert prepare_state_folder(state) is None  # already private: nothing to say


def test_given_a_file_where_the_state_folder_goes_when_prepared_then_refused(tmp_path):
    (tmp_path / "state").write_text("x")
    with pytest.raises(StateFolderError, match=r"\[paths\] state_dir\): not a folder"):
        prepare_state_folder(tmp_path / "state")


def another_users_folder(tmp_path: Path) -> Path:
    """A folder this process does not own: as root, one given to nobody; otherwise a system
    folder owned by root."""
    if os.geteuid() == 0:
        state = tmp_path / "state"
        state.mkdir(mode=0o755)
        os.chown(state, NOBODY, NOBODY)
        return state
    return Path("/usr")


def test_given_another_users_state_folder_when_up_then_refused_naming_it_and_nothing_written(
        tmp_path, monkeypatch, capsys):
    state = another_users_folder(tmp_path)
    owner, before, mode_before = state.stat().st_uid, sorted(state.iterdir()), mode(state)
    assert owner != os.geteuid()
    config = tmp_path / "katagate.toml"
    config.write_text(f'[paths]\nstate_dir = "{state}"\n')
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # never reached

    code = main(["up", "--config", str(config)])

    err = capsys.readouterr().err
    assert code == 1
    assert f"state folder {state} ([paths] state_dir) belongs to uid {owner}" in err
    assert sorted(state.iterdir()) == before
    assert mode(state) == mode_before
