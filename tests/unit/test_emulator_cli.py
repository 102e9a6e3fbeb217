"""The emulator's command line as another program mounts it (`katagate kata-emulator ...`)."""

from __future__ import annotations

import argparse

import pytest

from katagate.emulator_cmd import register


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="katagate")
    register(root.add_subparsers(dest="command", required=True))
    return root


def test_register_adds_runnable_leaves(tmp_path, capsys):
    args = parser().parse_args(["kata-emulator", "faults", "set", "--error-rate", "0.25",
                                "--latency", "uniform:1:2", "--state", str(tmp_path)])
    assert args.run(args) == 0
    assert "0.25" in capsys.readouterr().out
    args = parser().parse_args(["kata-emulator", "fingerprint", "--state", str(tmp_path)])
    assert args.run(args) == 0
    assert len(capsys.readouterr().out.strip()) == 95


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--error-rate", "2", "--error-rate must be a number in 0..1"),
    ("--hang-seconds", "-1", "--hang-seconds must be seconds"),
    ("--max-object-bytes", "0", "--max-object-bytes must be a whole number"),
    ("--latency", "exp:0", "--latency must be"),
])
def test_bad_fault_values_exit_2_naming_the_option(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["kata-emulator", "faults", "set", option, value,
                             "--state", str(tmp_path)])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_faults_set_needs_an_option(tmp_path, capsys):
    args = parser().parse_args(["kata-emulator", "faults", "set", "--state", str(tmp_path)])
    assert args.run(args) == 2
    assert "at least one option" in capsys.readouterr().err
