"""`--log-format` and `--log-level` on every stage's `run` command, KATAGATE_LOG_LEVEL, and
katagate.toml's [logging] and [logging.STAGE] through `katagate up`: the option wins over the
environment, which wins over the file; a bad value is refused naming the option and the values
it allows (exit 2)."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from katagate.cli import build_parser
from katagate.log_output import LogSettings, configure
from katagate.process import log_settings, pass_logging_on
from tests.unit.test_log_output import unset

RUN_COMMANDS = [["ingest", "run"], ["scanner", "run"], ["decider", "run"], ["projector", "run"],
                ["console", "run"], ["audit", "checkpoint", "run"]]
VARIABLES = ("KATAGATE_LOG_FORMAT", "KATAGATE_LOG_LEVEL", "KATAGATE_SYSLOG")


@pytest.fixture
def clean_env(monkeypatch):
    unset(monkeypatch, *VARIABLES)
    return monkeypatch


@pytest.mark.parametrize("command", RUN_COMMANDS, ids=" ".join)
def test_given_a_stage_run_command_then_the_options_win_over_the_environment(clean_env, command):
    # Given the environment says warning and text
    clean_env.setenv("KATAGATE_LOG_LEVEL", "warning")
    clean_env.setenv("KATAGATE_LOG_FORMAT", "text")
    # When the run command is given --log-level debug --log-format json
    args = build_parser().parse_args([*command, "--log-level", "DEBUG", "--log-format", "json"])
    # Then the options win
    settings = log_settings(args, command[0])
    assert (settings.log_level, settings.log_format) == ("debug", "json")
    # And without them the environment does
    settings = log_settings(build_parser().parse_args(command), command[0])
    assert (settings.log_level, settings.log_format) == ("warning", "text")


def test_given_nothing_set_then_the_level_is_info_and_the_format_text(clean_env):
    settings = log_settings(build_parser().parse_args(["decider", "run"]), "decider")
    assert (settings.log_level, settings.log_format) == ("info", "text")


@pytest.mark.parametrize(("option", "value", "allowed"), [
    ("--log-level", "verbose", "'debug', 'info', 'warning', 'error', 'critical'"),
    ("--log-format", "xml", "'text', 'json'"),
])
def test_given_a_bad_option_value_then_exit_2_naming_the_option_and_values(
        capsys, option, value, allowed):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["scanner", "run", option, value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: invalid choice: '{value}'" in err
    assert allowed in err


def test_given_a_bad_level_in_the_environment_then_the_stage_exits_2_naming_it(clean_env, capsys):
    clean_env.setenv("KATAGATE_LOG_LEVEL", "loud")
    with pytest.raises(SystemExit) as stopped:
        log_settings(build_parser().parse_args(["decider", "run"]), "decider")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "katagate decider: setting log_level (KATAGATE_LOG_LEVEL)" in err
    assert "'debug', 'info', 'warning', 'error' or 'critical'" in err


def test_given_the_file_sets_levels_then_up_passes_them_and_a_stage_table_only_to_its_stage(
        clean_env):
    # Given [logging] level = "warning" and [logging.decider] level = "debug"
    per_stage = pass_logging_on({"level": "warning", "format": "json",
                                 "decider": {"level": "debug"}})
    # Then every child inherits warning, and the decider's child gets debug over it
    assert os.environ["KATAGATE_LOG_LEVEL"] == "warning"
    assert per_stage["decider"] == {"KATAGATE_LOG_LEVEL": "debug"}
    assert per_stage["scanner"] == {}


def test_given_the_environment_sets_the_level_then_it_wins_over_the_file(clean_env):
    clean_env.setenv("KATAGATE_LOG_LEVEL", "error")
    per_stage = pass_logging_on({"level": "warning", "decider": {"level": "debug"}})
    assert os.environ["KATAGATE_LOG_LEVEL"] == "error"
    assert per_stage["decider"] == {}


@pytest.mark.parametrize(("section", "said"), [
    ({"decider": {"level": "loud"}},
     "katagate up: [logging.decider]: setting log_level (KATAGATE_LOG_LEVEL)"),
    ({"decider": {"levle": "debug"}},
     "unknown key 'levle' in [logging.decider]; allowed: format, level"),
    ({"level": "loud"}, "katagate up: setting log_level (KATAGATE_LOG_LEVEL)"),
    ({"decider": "debug"}, "[logging] decider must be a table [logging.decider]"),
])
def test_given_a_bad_logging_section_then_up_exits_2_naming_it(clean_env, capsys, section, said):
    with pytest.raises(SystemExit) as stopped:
        pass_logging_on(section)
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err


def test_given_a_level_then_the_root_logger_logs_from_it(clean_env):
    root = logging.getLogger()
    (level, kept) = (root.level, list(root.handlers))
    try:
        configure(LogSettings(log_level="warning"), "decider")
        assert root.getEffectiveLevel() == logging.WARNING
        configure(LogSettings(log_level="debug"), "decider")
        assert root.getEffectiveLevel() == logging.DEBUG
    finally:
        root.handlers[:] = kept
        root.setLevel(level)


def test_given_a_stage_table_then_only_that_stage_child_starts_with_it(clean_env, tmp_path):
    # Given `up`'s supervisor with [logging] level = "warning", [logging.decider] level = "debug"
    from katagate.supervisor import Child, Supervisor

    supervisor = Supervisor(tmp_path)
    supervisor.named_env = pass_logging_on({"level": "warning", "decider": {"level": "debug"}})
    says = ("import os, time; print('level=' + os.environ['KATAGATE_LOG_LEVEL'], flush=True); "
            "time.sleep(60)")  # alive until stopped: the supervisor reads its line first
    try:
        # When it starts the decider and the scanner
        started = {name: supervisor.start(Child(name, [sys.executable, "-c", says],
                                                tmp_path / f"{name}.log", ready_prefix="level="))
                   for name in ("decider", "scanner")}
    finally:
        supervisor.stop_in_tiers([])
    # Then the decider runs at debug, the scanner at the file's level
    assert started["decider"].ready_line.strip() == "level=debug"
    assert started["scanner"].ready_line.strip() == "level=warning"
