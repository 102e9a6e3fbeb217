"""Every section of katagate.toml and the settings class that reads it; the sections only
`katagate up` reads ([paths], [metrics], [sink], [emulator], [kata], [up]); and the check of a whole
file (`katagate config check`, `katagate up` before it starts anything)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from katagate.eventlog.config_file import (
    CONFIG_ENV,
    ConfigFileError,
    EnvValueError,
    FileSettings,
    origins,
    preloaded,
    read,
    section_problems,
    value_problem,
)
from katagate.schemas import KataSettings

DAY_S = 86400
# Raw bytes must outlive the longest wait before apply reads them for a last delivery attempt.
# A message may wait response_timeout_s (at most a day, the product's range) on the waiting
# list of a full quarantine, then as long again for its scan, before its first attempt; the
# last attempt starts retry_period_s after the first, and reads the bytes as it starts.
RETENTION_MARGIN_S = 2 * DAY_S


class PathsSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_PATHS_", frozen=True)
    config_section: ClassVar[str] = "paths"

    # Broker data, the sensor key pair, emulator state, the sink's mailbox, the stages' logs.
    state_dir: Path = Path(".katagate")


class MetricsSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_METRICS_", frozen=True)
    config_section: ClassVar[str] = "metrics"

    # Each stage's /metrics on 127.0.0.1: base_port + 0..5 (ingest, scanner, decider,
    # projector, console, audit), and `up`'s own (its restarts) on base_port + 6.
    base_port: int = Field(default=9101, ge=1, le=65529)


class UpSettings(FileSettings):
    """How `katagate up` treats a child that dies (katagate/restart_policy.py): restarted with
    backoff, until it fails more than `restart_limit` times within `restart_window_s`; then
    the gateway stops (exit 1). Local runs only: systemd or Kubernetes restart in production."""

    model_config = SettingsConfigDict(env_prefix="KATAGATE_UP_", frozen=True)
    config_section: ClassVar[str] = "up"

    restart_limit: int = Field(default=5, ge=0, le=1000)
    restart_window_s: int = Field(default=300, ge=1, le=86400)


class SinkSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_SINK_", frozen=True)
    config_section: ClassVar[str] = "sink"

    enabled: bool = True
    port: int = Field(default=2526, ge=0, le=65535)


class EmulatorSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_EMULATOR_", frozen=True)
    config_section: ClassVar[str] = "emulator"

    enabled: bool = True
    port: int = Field(default=8443, ge=0, le=65535)
    rules: Path | None = None


_KATA = KataSettings.model_fields


class KataFileSettings(FileSettings):
    """[kata]: the KATA Protection settings `katagate up` writes as control events, at the
    first start and, for what the file names and the log holds otherwise, at each later start
    (actor `config-file`). Ranges as the product's (schemas/control.py)."""

    model_config = SettingsConfigDict(env_prefix="KATAGATE_KATA_", frozen=True)
    config_section: ClassVar[str] = "kata"

    central_node: str = "emulator"  # "emulator" (started by `up`) or the node's IPv4 address
    central_node_port: int = Field(default=443, ge=1, le=65535)
    response_timeout_s: int = Field(default=_KATA["response_timeout_s"].default, ge=60,
                                    le=86400)
    quarantine_max_bytes: int = Field(default=_KATA["quarantine_max_bytes"].default,
                                      ge=1024 * 1024, le=2**63 - 1)
    quarantine_max_messages: int = Field(default=_KATA["quarantine_max_messages"].default,
                                         ge=1, le=4294967296)
    poll_interval_s: int = Field(default=_KATA["poll_interval_s"].default, ge=1, le=3600)
    protection: bool = True  # the global KATA protection switch

    @field_validator("central_node")
    @classmethod
    def _node(cls, value: str) -> str:
        if value != "emulator":
            try:
                IPv4Address(value)
            except ValueError:
                raise ValueError(f"must be \"emulator\" or an IPv4 address, not {value!r}"
                                 ) from None
        return value


def section_models() -> dict[str, type[FileSettings]]:
    """Each section's settings class (the stages' imported here only: a stage's process
    imports its own)."""
    from katagate.audit.settings import AuditSettings
    from katagate.console.settings import ConsoleSettings
    from katagate.decider.settings import DeciderSettings
    from katagate.eventlog.settings import KafkaSettings
    from katagate.ingest.settings import IngestSettings
    from katagate.log_output import LogSettings
    from katagate.projector.settings import ProjectorSettings
    from katagate.scanner.settings import ScannerSettings

    return {"paths": PathsSettings, "kafka": KafkaSettings, "ingest": IngestSettings,
            "decider": DeciderSettings, "scanner": ScannerSettings, "kata": KataFileSettings,
            "emulator": EmulatorSettings, "projector": ProjectorSettings,
            "console": ConsoleSettings, "audit": AuditSettings, "logging": LogSettings,
            "metrics": MetricsSettings, "sink": SinkSettings, "up": UpSettings}


@contextmanager
def using(path: Path | None) -> Iterator[None]:
    """KATAGATE_CONFIG set to `path` (unset for None) while the block runs."""
    before = os.environ.get(CONFIG_ENV)
    if path is None:
        os.environ.pop(CONFIG_ENV, None)
    else:
        os.environ[CONFIG_ENV] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = before


@dataclass
class Checked:
    """A whole file checked: its problems (each `[section] key: problem`), the number of
    settings it sets, and each section's settings where they could be made."""

    problems: list[str] = field(default_factory=list)
    count: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


def check(path: Path) -> Checked:
    """Every problem of the file at once: syntax (line and column), unknown sections and keys
    (with the nearest valid name), values out of range (with the range), and the raw mail's
    retention against the delivery retry period. The environment takes part, as in a stage."""
    try:
        document = read(path)
    except ConfigFileError as exc:
        return Checked(problems=exc.problems)
    result = Checked(problems=section_problems(document))
    models = section_models()
    usable = {name: value for name, value in document.items()
              if name in models and isinstance(value, dict)}
    for name, model in models.items():
        keys = model.file_problems(document)
        result.problems += keys
        if keys:  # the section without the keys it does not know, to check the rest
            usable[name] = {k: v for k, v in usable[name].items()
                            if k in model.known_keys()}
        result.count += len(model.own_values(usable))
    with using(path.resolve()), preloaded(usable):
        for name, model in models.items():
            try:
                result.settings[name] = model()
            except ValidationError as exc:
                result.problems += [value_problem(model, name, e) for e in exc.errors()]
            except ConfigFileError:
                continue  # a table within the section with an unknown key: listed above
            except EnvValueError as exc:
                result.problems.append(f"environment: {exc}")
    kata, emulator = result.settings.get("kata"), result.settings.get("emulator")
    if kata and emulator and kata.central_node == "emulator" and not emulator.enabled:
        result.problems.append('[kata] central_node: "emulator" needs [emulator] enabled '
                               "= true; else name the Central Node's IPv4 address")
    if "kafka" in result.settings and "decider" in result.settings:
        problem = retention_problem(result.settings["kafka"].raw_retention_ms,
                                    result.settings["decider"].retry_period_s)
        if problem:
            result.problems.append(problem)
    return result


def retention_problem(raw_retention_ms: int, retry_period_s: int) -> str | None:
    """Raw mail kept for less than a message may wait at the next hop, plus the margin."""
    needed_ms = (retry_period_s + RETENTION_MARGIN_S) * 1000
    if raw_retention_ms >= needed_ms:
        return None
    return (f"[kafka] raw_retention_ms: {raw_retention_ms} keeps raw mail "
            f"{raw_retention_ms / 1000 / DAY_S:g} days, less than [decider] retry_period_s "
            f"({retry_period_s} s) plus {RETENTION_MARGIN_S // DAY_S} days (a message's wait "
            f"for room and for its scan before its first attempt): must be at least "
            f"{needed_ms}, or the last delivery attempts find no bytes to send")


UP_SECTIONS = ("paths", "metrics", "sink", "emulator", "kata", "up")


def up_sections(document: dict[str, Any]) -> dict[str, Any]:
    """The document with `katagate up`'s own sections as it uses them: the values the file or
    the environment (KATAGATE_<SECTION>_<KEY>) sets, typed; a key neither sets is left out, so
    the default applies and, in [kata], the log's value stays. A bad environment value raises
    ValidationError (the file was checked)."""
    models = section_models()
    result = dict(document)
    with preloaded(document):
        for name in UP_SECTIONS:
            model = models[name]
            settings, found = model(), origins(model, document)
            result[name] = {key: getattr(settings, key) for key in model.file_keys()
                            if found[key] != "default"}
    return result
