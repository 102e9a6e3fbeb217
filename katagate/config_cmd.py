"""`katagate config check|show|apply`: the configuration file checked as a whole, the settings
in force with where each comes from, and its [kata] written as settings events where no
`katagate up` does it (systemd, Kubernetes); `config show --kafka`: the Kafka client configuration a
stage would use, katagate's settings merged with the user's properties file, every secret
redacted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from katagate.config_sections import check, section_models, up_sections, using
from katagate.eventlog.clients import shown_config
from katagate.eventlog.config_file import (
    CONFIG_ENV,
    ConfigFileError,
    config_path,
    is_secret,
    origins,
    read,
)
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.settings import KafkaSettings
from katagate.up_kata import write_kata_settings

MASK = "********"


def register(commands: Any) -> None:
    parser = commands.add_parser("config", help="check and show the configuration in force")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    def with_file(name: str, help_text: str) -> argparse.ArgumentParser:
        action: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        action.add_argument("file", nargs="?", type=Path,
                            help=f"the file (default: {CONFIG_ENV}, else ./katagate.toml)")
        return action

    with_file("check", "check a configuration file: exit 0, or 2 with every problem listed"
              ).set_defaults(run=_check)
    show = with_file("show", "every setting's effective value and where it comes from "
                             "(default, file, env); secrets masked")
    show.add_argument("--kafka", action="store_true",
                      help="the Kafka client configuration instead (secrets redacted)")
    show.add_argument("--principal", choices=list(PRINCIPALS),
                      help="with --kafka (implied): whose credentials (default admin)")
    show.set_defaults(run=_show)
    with_file("apply", "write the file's [kata] as KATA Protection settings (actor "
                       "config-file), as katagate up does at each start").set_defaults(run=_apply)


def _file(args: argparse.Namespace) -> Path:
    return Path(args.file or config_path() or "katagate.toml")


def _refused(path: Path, problems: list[str]) -> bool:
    """Print every problem the file has, one per line; True if it has any."""
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    return bool(problems)


def _check(args: argparse.Namespace) -> int:
    path = _file(args)
    checked = check(path)
    if _refused(path, checked.problems):
        return 2
    print(f"ok: {path}, {checked.count} settings")
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.kafka or args.principal is not None:
        return _show_kafka(args)
    path = _file(args)
    checked = check(path)
    if _refused(path, checked.problems):
        return 2
    document = read(path)
    print(f"# {path}: value (origin: default, file or env)")
    with using(path.resolve()):
        for name, model in section_models().items():
            settings = checked.settings[name]
            found = origins(model, document)
            print(f"[{name}]")
            if name == "kata":
                print("# control events: a default here leaves the control log's value as it is")
            for key in model.file_keys():
                value = getattr(settings, key)
                shown = MASK if value is not None and is_secret(key, value) else _plain(value)
                print(f"{model.key_of(key)} = {shown}  # {found[key]}")
    return 0


def _plain(value: object) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_plain(item) for item in value) + "]"
    return str(value)


def _show_kafka(args: argparse.Namespace) -> int:
    try:
        principal = args.principal or "admin"
        settings = KafkaSettings(principal=principal)
    except ConfigFileError as exc:
        print(f"katagate config: {exc}", file=sys.stderr)
        return 2
    print(f"# principal {principal}, topic prefix {settings.topic_prefix}")
    for key, value in sorted(shown_config(settings).items()):
        print(f"{key}={value}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    """[kata] into the control log where the stages run on their own (systemd, Kubernetes):
    only `katagate up` reads [kata] at start, so an edit there does nothing until this runs."""
    path = _file(args)
    checked = check(path)
    if _refused(path, checked.problems):
        return 2
    kata: dict[str, Any] = up_sections(read(path)).get("kata", {})
    if not kata:
        print(f"{path}: no [kata] setting to apply")
        return 0
    if kata.get("central_node") == "emulator":
        print(f"katagate config apply: {path}: [kata] central_node: \"emulator\" is the one "
              "katagate up starts; name the Central Node's IPv4 address", file=sys.stderr)
        return 2
    address = str(kata.get("central_node", ""))
    with using(path.resolve()):
        kafka = KafkaSettings(principal="admin")
    if not write_kata_settings(kafka, kata, address, int(kata.get("central_node_port", 443)),
                               command="katagate config apply"):
        return 2
    return 0
