"""Where a `katagate … run` process logs, and in what form.

- stderr, always: text (`time LEVEL logger message`, as before), or with
  `KATAGATE_LOG_FORMAT=json` one JSON object per line: `time`, `level`, `logger`, `stage`,
  `message`, and for a mail log line (eventlog/mail_log.py) `message_id`, `event`,
  `event_id`, `occurred_at`, `step` and the line's fields (`stage` is then the stage that wrote
  the event); one of ingest's SMTP workers (`[ingest] processes` > 1) says which, `[worker N]`
  after the logger in text, `worker` in JSON;
- syslog too, when `KATAGATE_SYSLOG` names it (`/dev/log` or another socket path, or
  `udp:HOST:PORT`), facility `mail`, tagged `katagate/<stage>[pid]`, in the same form (text
  without the time, which syslog adds); a local socket that is full drops the line rather
  than block the stage.

The level (`KATAGATE_LOG_LEVEL`: debug, info, warning, error, critical; default info) is the
root logger's. Each `run` command takes `--log-format` and `--log-level`, which win over the
environment, which wins over katagate.toml: `katagate up` passes its `[logging]` section
(`format`, `level`, `syslog`) to every child as these variables, and a `[logging.STAGE]` table
(`level`, `format`) to that stage's child only.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import stat
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from katagate.eventlog.config_file import FileSettings, key_problems
from katagate.eventlog.mail_log import Logged

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
SYSLOG_FORM = "/dev/log (a socket path) or udp:HOST:PORT"
# katagate.toml's [logging] keys and the variables they become.
SECTION = {"format": "KATAGATE_LOG_FORMAT", "level": "KATAGATE_LOG_LEVEL",
           "syslog": "KATAGATE_SYSLOG"}
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
# The children of `katagate up` a [logging.STAGE] table may name, and the keys it may set.
STAGES = ("ingest", "scanner", "decider", "projector", "console", "audit")
STAGE_KEYS = ("format", "level")
_RESERVED = ("time", "level", "logger", "worker")


class LogSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_")
    config_section: ClassVar[str] = "logging"

    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    syslog: str = ""  # empty: no syslog

    @classmethod
    def key_of(cls, field: str) -> str:
        return field.removeprefix("log_")

    @classmethod
    def known_keys(cls) -> list[str]:
        return [*SECTION, *STAGES]

    @classmethod
    def file_problems(cls, document: Mapping[str, Any]) -> list[str]:
        """Unknown keys of [logging] and of its [logging.STAGE] tables, with the nearest."""
        section = document.get("logging", {})
        if not isinstance(section, dict):
            return []
        problems = key_problems("logging", section, cls.known_keys())
        for stage in STAGES:
            table = section.get(stage, {})
            if not isinstance(table, dict):
                problems.append(f"[logging] {stage}: must be a table [logging.{stage}] with "
                                f"{' or '.join(STAGE_KEYS)}")
            else:
                problems += key_problems(f"logging.{stage}", table, STAGE_KEYS)
        return problems

    @classmethod
    def own_values(cls, document: Mapping[str, Any]) -> dict[str, Any]:
        """[logging], and over it the [logging.STAGE] table of this process's stage, keyed by
        field (format, level and syslog in the file)."""
        section = document.get("logging", {})
        section = section if isinstance(section, dict) else {}
        stage = section.get(process_stage(), {})
        table = {**section, **(stage if isinstance(stage, dict) else {})}
        return {"log_" + key if key in STAGE_KEYS else key: value
                for key, value in table.items() if key in SECTION}

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("syslog")
    @classmethod
    def _a_syslog_target(cls, value: str) -> str:
        syslog_address(value)
        return value


def syslog_address(value: str) -> str | tuple[str, int] | None:
    """A socket path, or (host, port) for `udp:HOST:PORT` (an IPv6 host in brackets)."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    match = re.fullmatch(r"udp:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})", value)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"must be {SYSLOG_FORM}, got {value!r}")
    return match.group(1).strip("[]"), int(match.group(2))


def process_stage() -> str:
    """The stage a `katagate STAGE run` process runs: its first argument."""
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    return name if re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name) else "katagate"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (json escapes every control character)."""

    def __init__(self, stage: str, worker: int | None = None) -> None:
        super().__init__()
        self._stage = stage
        self._worker = {} if worker is None else {"worker": worker}

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname, "logger": record.name, "stage": self._stage,
            **self._worker,
        }
        mail = getattr(record, "maillog", None)
        if isinstance(mail, Logged):
            body.update({k: v for k, v in mail.fields().items() if k not in _RESERVED})
        body["message"] = record.getMessage()
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=True)


class SyslogTextFormatter(logging.Formatter):
    """A mail log line as it is (syslog adds time and tag); other records with level and
    logger; a traceback kept on the record's one line."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(getattr(record, "maillog", None), Logged):
            text = record.getMessage()
        else:
            text = f"{record.levelname} {record.name} {record.getMessage()}"
            if record.exc_info:
                text += " " + self.formatException(record.exc_info)
        return text.replace("\r", "\\r").replace("\n", "\\n")


DROPS_REPORTED = 1000  # a dropped syslog line is said on stderr once per this many


class NonBlockingSyslog(logging.handlers.SysLogHandler):
    """SysLogHandler whose local socket never blocks: the mail log is written in the thread
    that committed the events, so a syslog daemon that stops reading (its socket queue full)
    would stall the stage, and the mail with it. A line the socket cannot take now is dropped
    and counted (`dropped`, said on stderr), as a UDP datagram would be."""

    dropped = 0

    def _connect_unixsocket(self, address: Any) -> None:
        # CPython's connect of a local socket (not in typeshed), also called by emit() to
        # reconnect after a failed send: each socket it makes is non-blocking.
        super()._connect_unixsocket(address)  # type: ignore[misc]
        self.socket.setblocking(False)  # type: ignore[attr-defined]

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], BlockingIOError):
            self.dropped += 1
            if self.dropped % DROPS_REPORTED == 1:  # said on stderr, not to syslog again
                sys.stderr.write(f"katagate: the syslog socket is full: {self.dropped} "
                                 "line(s) dropped so far\n")
            return
        super().handleError(record)


def text_format(worker: int | None = None) -> str:
    """TEXT_FORMAT, naming one of ingest's SMTP workers: the workers share one stderr."""
    return TEXT_FORMAT if worker is None else TEXT_FORMAT.replace(
        "%(name)s ", f"%(name)s [worker {worker}] ")


def handlers(settings: LogSettings, stage: str,
             worker: int | None = None) -> list[logging.Handler]:
    """stderr, and syslog when configured (the socket is opened here: a path that is not a
    socket raises OSError). `worker`: the process is that SMTP worker of ingest's; syslog's
    text keeps its form, its tag naming each process by pid already."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(JsonFormatter(stage, worker) if settings.log_format == "json"
                        else logging.Formatter(text_format(worker)))
    found: list[logging.Handler] = [stderr]
    address = syslog_address(settings.syslog)
    if isinstance(address, str) and not stat.S_ISSOCK(os.stat(address).st_mode):
        # SysLogHandler would take it silently and fail on every record.
        raise OSError(f"{address} is not a socket")
    if address is not None:
        syslog = NonBlockingSyslog(
            address=address, facility=logging.handlers.SysLogHandler.LOG_MAIL)
        syslog.ident = f"katagate/{stage}[{os.getpid()}]: "
        syslog.setFormatter(JsonFormatter(stage, worker) if settings.log_format == "json"
                            else SyslogTextFormatter())
        found.append(syslog)
    return found


def configure(settings: LogSettings, stage: str, worker: int | None = None) -> None:
    """The root logger at the settings' level with `handlers` (unless something configured it
    already)."""
    logging.basicConfig(handlers=handlers(settings, stage, worker))
    logging.getLogger().setLevel(settings.log_level.upper())


def add_options(parser: Any) -> None:
    """`--log-format` and `--log-level` on a `run` command (argparse refuses another value,
    naming the option and the allowed ones, exit 2)."""
    parser.add_argument("--log-format", choices=FORMATS,
                        help="text or json (overrides KATAGATE_LOG_FORMAT)")
    parser.add_argument("--log-level", choices=LEVELS, type=str.lower,
                        help="the least severe level logged (overrides KATAGATE_LOG_LEVEL)")


def section_env(section: Mapping[str, Any],
                environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """katagate.toml's [logging] (its keys, without the [logging.STAGE] tables) as the
    variables every child reads; a variable the environment sets wins. An unknown key raises
    ValueError naming the allowed ones."""
    unknown = sorted(set(section) - set(SECTION) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in [logging]; allowed: "
                         f"{', '.join(sorted(SECTION))}, or a table [logging.STAGE] for a "
                         f"stage of {', '.join(STAGES)}")
    for stage in STAGES:
        stage_env(section, stage)  # a bad stage table is refused before anything starts
    return {SECTION[key]: str(value) for key, value in section.items()
            if key in SECTION and SECTION[key] not in environ}


def stage_env(section: Mapping[str, Any], stage: str) -> dict[str, str]:
    """The variables [logging.STAGE] sets for that stage's child only, over [logging]'s; a
    variable the environment sets wins."""
    table = section.get(stage, {})
    if not isinstance(table, dict):
        raise ValueError(f"[logging] {stage} must be a table [logging.{stage}] with "
                         f"{' or '.join(STAGE_KEYS)}")
    unknown = sorted(set(table) - set(STAGE_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in [logging.{stage}]; allowed: "
                         f"{', '.join(STAGE_KEYS)}")
    return {SECTION[key]: str(value) for key, value in table.items()
            if SECTION[key] not in os.environ}
