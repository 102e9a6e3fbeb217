"""What every long-running `katagate … run` process starts with."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from katagate import gc_tuning, switch_interval
from katagate.eventlog.config_file import (
    CONFIG_ENV,
    ConfigFileError,
    EnvValueError,
    FileSettings,
    config_path,
    origins,
    read,
    section_problems,
    value_problem,
)
from katagate.log_output import (
    STAGES,
    LogSettings,
    configure,
    process_stage,
    section_env,
    stage_env,
)

Settings = TypeVar("Settings", bound=BaseSettings)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=str, metavar="FILE",
                        help=f"the configuration file (katagate.toml); {CONFIG_ENV} when not "
                             "given; environment variables win over it")


def use_config(args: argparse.Namespace, stage: str) -> None:
    """The `--config` file (else KATAGATE_CONFIG's) for every settings object this process
    makes; a file that cannot be read, is not TOML or has an unknown section exits 2 here,
    naming the line and column or the section (its keys are checked by each settings class)."""
    if getattr(args, "config", None):
        os.environ[CONFIG_ENV] = str(os.path.abspath(args.config))
    path = config_path()
    if path is None:
        return
    try:
        problems = section_problems(read(path))
    except ConfigFileError as exc:
        _exit_on_file(stage, exc)
    if problems:
        _exit_on_file(stage, ConfigFileError(path, problems))


def _exit_on_file(command: str, exc: ConfigFileError) -> NoReturn:
    for line in str(exc).splitlines():
        print(f"katagate {command}: {line}", file=sys.stderr)
    raise SystemExit(2) from None


def stop_on_signals(args: argparse.Namespace) -> threading.Event:
    """Set up the log (katagate/log_output.py: stderr in text or JSON at its level, syslog if
    configured; the `--log-format`/`--log-level` options over the environment), for the
    stages that read the log, the garbage collector (katagate/gc_tuning.py), and ingest's thread
    switch interval (katagate/switch_interval.py); return an event SIGTERM or SIGINT sets (a
    clean stop, not a kill)."""
    stage = process_stage()
    settings = log_settings(args, stage)
    try:
        configure(settings, stage, getattr(args, "worker", None))
    except OSError as exc:
        print(f"katagate {stage}: setting syslog (KATAGATE_SYSLOG): cannot log to "
              f"{settings.syslog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    gc_tuning.for_a_stage(stage)
    switch_interval.for_a_stage(stage)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def log_settings(args: argparse.Namespace, stage: str) -> LogSettings:
    """The log settings: the `run` command's options over the environment (which carries
    katagate.toml's [logging] from `katagate up`); a bad value exits 2 naming it."""
    flags = {name: value for name in ("log_format", "log_level")
             if (value := getattr(args, name, None)) is not None}
    return settings_or_exit(LogSettings, stage, **flags)


def pass_logging_on(section: dict[str, Any]) -> dict[str, dict[str, str]]:
    """katagate.toml's [logging] into the environment every child of `katagate up` inherits
    (a variable set already wins), and each [logging.STAGE] table as the variables of that
    stage's child only; a bad key or value exits 2 here, naming the setting."""
    try:
        per_stage = {stage: stage_env(section, stage) for stage in STAGES}
        os.environ.update(section_env(section))
    except ValueError as exc:
        print(f"katagate up: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    settings_or_exit(LogSettings, "up")
    for stage, env in per_stage.items():
        fields = {name.removeprefix("KATAGATE_").lower(): value for name, value in env.items()}
        settings_or_exit(LogSettings, f"up: [logging.{stage}]", **fields)
    return per_stage


def settings_or_exit(model: type[Settings], command: str, **overrides: Any) -> Settings:
    """`model` from the environment and `overrides`; a bad value exits 2 naming the setting,
    its environment variable and the allowed range (the model's Field bounds)."""
    try:
        return model(**overrides)
    except ConfigFileError as exc:
        _exit_on_file(command, exc)
    except EnvValueError as exc:
        print(f"katagate {command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValidationError as exc:
        prefix = str(model.model_config.get("env_prefix", ""))
        from_file = _file_origins(model)
        for error in exc.errors():
            if error["loc"] and from_file.get(str(error["loc"][0])) == "file":
                section = model.config_section  # type: ignore[attr-defined]
                print(f"katagate {command}: {config_path()}: "
                      f"{value_problem(model, section, error)}", file=sys.stderr)
                continue
            name = ".".join(str(part) for part in error["loc"])
            print(f"katagate {command}: setting {name} ({prefix}{name.upper()}): "
                  f"{error['msg']}{_bounds(model, name)}", file=sys.stderr)
        raise SystemExit(2) from None


def _file_origins(model: type[BaseSettings]) -> dict[str, str]:
    """Which fields the configuration file sets (and neither the environment nor an option)."""
    path = config_path()
    if path is None or not issubclass(model, FileSettings):
        return {}
    return dict(origins(model, read(path)))


def _bounds(model: type[BaseSettings], name: str) -> str:
    """The field's range as its Field bounds say, e.g. '; allowed: >= 1, <= 1024'."""
    field = model.model_fields.get(name)
    if field is None:
        return ""
    found = [f"{sign} {getattr(m, attr)}" for m in field.metadata
             for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
             if getattr(m, attr, None) is not None]
    return f"; allowed: {', '.join(found)}" if found else ""
