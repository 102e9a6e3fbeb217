"""katagate.toml, the one configuration file every stage reads (`--config FILE` or
`KATAGATE_CONFIG`), and its place among a settings class's sources.

A settings class that derives from `FileSettings` names its `[section]`; its values then come
from, first to last: the keyword arguments (a command's options), the environment
(`KATAGATE_<SECTION>_<KEY>`), the file's section, the field's default. The file is refused as
a whole for what no section could make sense of (a syntax error, with its line and column; an
unknown section), and a section for a key it does not know, naming the nearest valid one: a
typo must not silently leave a default in force. A value out of range is pydantic's to find;
`value_problem` says it the same way for every section ("must be between 60 and 86400").

Pure apart from reading the file; no stage's settings are imported here (eventlog is shared).
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import SecretStr
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
)

from katagate.schemas.errors import KatagateError

CONFIG_ENV = "KATAGATE_CONFIG"
# Every section the file may hold (katagate.toml): the stages', and `katagate up`'s own.
SECTIONS = ("paths", "kafka", "ingest", "decider", "scanner", "kata", "emulator", "projector",
            "console", "audit", "logging", "metrics", "sink", "up")
Origin = Literal["default", "file", "env", "option"]
# A document already read (and checked) stands in for the file: `config check` makes every
# section's settings from one reading, its unknown sections and keys left out.
_PRELOADED: ContextVar[Mapping[str, Any] | None] = ContextVar("preloaded", default=None)


MAX_FILE_BYTES = 1024 * 1024  # katagate.toml is a few kilobytes


class ConfigFileError(KatagateError):
    """The configuration file cannot be used: every problem, one line each, the file named."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {problem}" for problem in problems))


def config_path() -> Path | None:
    """The file named by KATAGATE_CONFIG (a `--config` option sets it); none: no file."""
    value = os.environ.get(CONFIG_ENV, "")
    return Path(value) if value else None


def read(path: Path) -> dict[str, Any]:
    """The file's tables; unreadable or not TOML raises ConfigFileError, a syntax error with
    tomllib's line and column ("... (at line 3, column 7)"), and so does a file that others
    may write, or read while it holds a secret (`exposure_problems`)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:  # /dev/zero, a log named by mistake
            raise ConfigFileError(path, [f"larger than {MAX_FILE_BYTES} bytes: not a "
                                         "configuration file"])
        text = data.decode("utf-8")
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigFileError(path, ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(path, [f"cannot read: {exc}"]) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(path, [f"not valid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses per nested array or inline table
        raise ConfigFileError(path, ["not valid TOML: arrays or inline tables nested too "
                                     "deep"]) from None
    except ValueError as exc:  # an integer past Python's 4300 digits, say
        raise ConfigFileError(path, [f"not valid TOML: {exc}"]) from None
    problems = exposure_problems(mode, secret_keys(document), path)
    if problems:
        raise ConfigFileError(path, problems)
    return document


def secret_keys(document: Mapping[str, Any], where: str = "") -> list[str]:
    """`[section] key` of each secret the document sets (`is_secret`), nested tables too."""
    found = []
    for key, value in document.items():
        if isinstance(value, dict):
            found += secret_keys(value, f"{where}.{key}" if where else key)
        elif is_secret(key, value):
            found.append(f"[{where}] {key}" if where else key)
    return found


def exposure_problems(mode: int, secrets: list[str], path: Path) -> list[str]:
    """The file's mode against what it holds: writable by others (anyone on the host could
    send the mail elsewhere or switch protection off), or readable by others while it holds a
    secret. Its group may read it (root:katagate 0640, deploy/systemd/README.md)."""
    if mode & 0o002:
        return [f"has mode {mode:04o}: others may change it, so it is refused "
                f"(chmod o-w {path})"]
    if mode & 0o004 and secrets:
        return [f"has mode {mode:04o} and holds {', '.join(secrets)}: a secret must not be "
                f"readable by others (chmod 640 {path})"]
    return []


def nearest(name: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def section_problems(document: Mapping[str, Any]) -> list[str]:
    """An unknown section (with the nearest known one), or a section that is not a table."""
    problems = []
    for name, value in document.items():
        if name not in SECTIONS:
            hint = nearest(name, SECTIONS)
            problems.append(f"[{name}]: unknown section" +
                            (f"; did you mean [{hint}]?" if hint else
                             f"; the sections are {', '.join(SECTIONS)}"))
        elif not isinstance(value, dict):
            problems.append(f"{name}: must be a table [{name}], not a value")
    return problems


def key_problems(section: str, values: Mapping[str, Any], known: Iterable[str]) -> list[str]:
    """Each key of `values` not in `known`, with the nearest valid name."""
    known = list(known)
    problems = []
    for key in values:
        if key not in known:
            hint = nearest(key, known)
            problems.append(f"[{section}] {key}: unknown setting" +
                            (f"; did you mean {hint}?" if hint else ""))
    return problems


def _bounds(field: Any) -> dict[str, Any]:
    return {attr: getattr(m, attr) for m in field.metadata
            for attr in ("ge", "gt", "le", "lt") if getattr(m, attr, None) is not None}


def value_problem(model: type[BaseSettings], section: str, error: ErrorDetails) -> str:
    """One pydantic error as one line: `[section] key: problem`, a range as its bounds say."""
    parts = [str(part) for part in error["loc"]]
    if parts and issubclass(model, FileSettings):
        parts[0] = model.key_of(parts[0])
    name = ".".join(parts)
    where = f"[{section}] {name}" if name else f"[{section}]"
    field = model.model_fields.get(str(error["loc"][0])) if error["loc"] else None
    bounds = _bounds(field) if field is not None else {}
    if error["type"] in ("greater_than_equal", "greater_than", "less_than_equal",
                         "less_than") and bounds:
        low = bounds.get("ge", bounds.get("gt"))
        high = bounds.get("le", bounds.get("lt"))
        if "ge" in bounds and "le" in bounds:
            said = f"must be between {low} and {high}"
        else:
            said = " and ".join(part for part in (
                f"must be {'at least' if 'ge' in bounds else 'more than'} {low}"
                if low is not None else "",
                f"{'at most' if 'le' in bounds else 'less than'} {high}"
                if high is not None else "") if part)
            said = said if said.startswith("must") else f"must be {said}"
        got = repr(error["input"])  # a number in range errors; a long one is cut
        return f"{where}: {said} (got {got if len(got) <= 40 else got[:37] + '...'})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


class EnvValueError(KatagateError):
    """An environment variable a settings class cannot parse (a list that is not JSON): the
    variable named, never its value."""


class _EnvSource(EnvSettingsSource):
    """The environment, with a value that is not JSON where a list is expected refused as an
    EnvValueError naming the variable (pydantic-settings raises an error outside its
    ValidationError for it, which a stage would end on with a traceback)."""

    def prepare_field_value(self, field_name: str, field: Any, value: Any,
                            value_is_complex: bool) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError:
            variable = f"{self.env_prefix}{field_name}".upper()
            raise EnvValueError(f"setting {field_name} ({variable}): not valid JSON; a list "
                                'is written ["a", "b"]') from None


class _SectionSource(InitSettingsSource):
    """The file's section as a source: keys normalised like keyword arguments (an aliased
    field's key is its alias), so the environment's value of the same field wins over it."""

    def __repr__(self) -> str:
        return "FileSection()"


class FileSettings(BaseSettings):
    """A settings class read from the keyword arguments, the environment and its section of
    the configuration file, in that order. `file_excluded`: fields the file may not set (set
    per process, like the Kafka principal)."""

    config_section: ClassVar[str] = ""
    file_excluded: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def file_keys(cls) -> list[str]:
        return [name for name in cls.model_fields if name not in cls.file_excluded]

    @classmethod
    def key_of(cls, field: str) -> str:
        """The key the file names `field` by (its own name unless said otherwise)."""
        return field

    @classmethod
    def known_keys(cls) -> list[str]:
        """The keys the file's section may hold (the fields, unless named otherwise there)."""
        return cls.file_keys()

    @classmethod
    def file_problems(cls, document: Mapping[str, Any]) -> list[str]:
        """Each key of this class's section it does not know, with the nearest valid name."""
        section = document.get(cls.config_section, {})
        if not isinstance(section, dict):
            return []
        return key_problems(cls.config_section, section, cls.known_keys())

    @classmethod
    def own_values(cls, document: Mapping[str, Any]) -> dict[str, Any]:
        """This class's values in the file, keyed by field name."""
        section = document.get(cls.config_section, {})
        return dict(section) if isinstance(section, dict) else {}

    @classmethod
    def file_values(cls, document: Mapping[str, Any]) -> dict[str, Any]:
        """`own_values`, once the file is known to hold no unknown section and no unknown key
        of this class's section (else ConfigFileError, naming the file `config_path()`)."""
        problems = section_problems(document) + cls.file_problems(document)
        if problems:
            raise ConfigFileError(config_path() or Path("?"), problems)
        return cls.own_values(document)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _EnvSource(settings_cls), file_source(cls), dotenv_settings,
                file_secret_settings)


def file_source(cls: type[FileSettings]) -> PydanticBaseSettingsSource:
    path, document = config_path(), _PRELOADED.get()
    if document is None and path is not None:
        document = read(path)
    return _SectionSource(cls, cls.file_values(document) if document is not None else {})


@contextmanager
def preloaded(document: Mapping[str, Any]) -> Iterator[None]:
    """Settings made in the block read `document` as the file."""
    token = _PRELOADED.set(document)
    try:
        yield
    finally:
        _PRELOADED.reset(token)


def origins(cls: type[FileSettings], document: Mapping[str, Any],
            options: Mapping[str, Any] | None = None) -> dict[str, Origin]:
    """Where each field's effective value comes from: an option, the environment, the file,
    or the default (the sources' order in `settings_customise_sources`)."""
    env = set(_EnvSource(cls)())
    in_file = set(cls.file_values(document))
    found: dict[str, Origin] = {}
    for name, field in cls.model_fields.items():
        names = {name, *_aliases(field)}
        if options and name in options:
            found[name] = "option"
        elif names & env or {n.lower() for n in names} & env:
            found[name] = "env"
        elif name in in_file:
            found[name] = "file"
        else:
            found[name] = "default"
    return found


def _aliases(field: Any) -> list[str]:
    alias = field.validation_alias
    if alias is None:
        return []
    if isinstance(alias, str):
        return [alias]
    return [choice for choice in getattr(alias, "choices", []) if isinstance(choice, str)]


SECRET_WORDS = ("password", "secret", "token")


def is_secret(name: str, value: object) -> bool:
    """A value `config show` masks: a SecretStr, or a setting named for a password, secret or
    token (the name of a file that holds one is not the secret: shown)."""
    if isinstance(value, SecretStr):
        return True
    return any(word in name for word in SECRET_WORDS) and not name.endswith(("_file", "_dir"))
