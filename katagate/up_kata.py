"""`katagate up`'s [kata]: the KATA Protection settings into the control log, all of them at the
first start, and afterwards what the file names differently from the settings in force, as a
settings change by the actor `config-file` (admin/first_start.py decides; this writes)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

from katagate.admin.errors import InvalidCommand
from katagate.admin.first_start import FILE_ACTOR, file_changes, first_start_events
from katagate.eventlog.folded import FoldedTopic
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import (
    ControlState,
    Event,
    KataProtectionToggled,
    KataSettings,
    KataSettingsChanged,
    KataSettingsReset,
    evolve_control,
)

UP_ACTOR = "katagate-up"  # the first start's writer

# [kata] keys that are KataSettings fields under the same name (the node is resolved apart).
KATA_FILE_FIELDS = ("response_timeout_s", "quarantine_max_bytes", "quarantine_max_messages",
                    "poll_interval_s")


@dataclass(frozen=True)
class Known:
    """The control state, and who made the last change of each KATA setting (and of
    `protection`), so `up` can say whose change the file's value replaces."""

    state: ControlState = field(default_factory=ControlState)
    set_by: Mapping[str, str] = field(default_factory=dict)


def evolve_known(known: Known, event: Event) -> Known:
    state = evolve_control(known.state, event)
    match event:
        case KataSettingsChanged():
            return Known(state, {**known.set_by, **dict.fromkeys(event.changed, event.actor)})
        case KataSettingsReset():
            names = dict.fromkeys(KataSettings.model_fields, event.actor)
            return Known(state, {**known.set_by, **names})
        case KataProtectionToggled():
            return Known(state, {**known.set_by, "protection": event.actor})
    return Known(state, known.set_by)


def undone(events: list[Event], set_by: Mapping[str, str]) -> list[str]:
    """A warning for each setting the file's events change that someone other than the file
    (or the first start) set last: the documented behaviour, said where it cannot be missed."""
    changed: list[str] = []
    for event in events:
        if isinstance(event, KataSettingsChanged):
            changed += event.changed
        elif isinstance(event, KataProtectionToggled):
            changed.append("protection")
    return [f"[kata] {name}: the file's value replaces the one {set_by[name]} set; remove "
            f"{name} from [kata] to keep what the commands set"
            for name in changed if set_by.get(name, FILE_ACTOR) not in (FILE_ACTOR, UP_ACTOR)]


def emulator_over_node(central_node: object, current: ControlState) -> str | None:
    """Refused: the file's `central_node = "emulator"` replacing a Central Node an
    administrator set (any address but the loopback the emulator listens on). Mail would then
    be scanned by a stand-in whose verdicts mean nothing while the console says *Connected*."""
    node = current.settings.central_node_address
    if central_node != "emulator" or node is None or node.is_loopback:
        return None
    return (f"[kata] central_node: the file says \"emulator\", the settings in force name the "
            f"Central Node {node}:{current.settings.central_node_port}; katagate does not "
            f"replace a Central Node by the emulator: set central_node = \"{node}\" in the "
            "file, or remove the key (katagate settings set to change the node)")


def write_kata_settings(kafka: KafkaSettings, kata: dict[str, Any], address: str,
                        port: int, command: str = "katagate up") -> bool:
    """[kata] into the control log: all of it at the first start; afterwards what the file
    names that the log does not hold, as a settings change by `config-file`, one line per
    setting. False (said on stderr) when the control state refuses a value."""
    control = FoldedTopic(kafka, TopicNames(kafka.topic_prefix).control, Known(), evolve_known)
    try:
        control.wait_caught_up(30)
        current, set_by = control.value.state, control.value.set_by
    finally:
        control.close()
    now = datetime.now(UTC)
    if current.version == 0:
        if not address:
            print(f"{command}: [kata] central_node: the first KATA settings need the Central "
                  "Node's address", file=sys.stderr)
            return False
        settings = KataSettings(
            central_node_address=IPv4Address(address), central_node_port=port,
            **{k: kata[k] for k in KATA_FILE_FIELDS if k in kata},
        )
        events = first_start_events(current, settings, bool(kata.get("protection", True)),
                                    UP_ACTOR, now)
        said = [f"KATA settings written (first start): Central Node {address}:{port}"]
    else:
        refused = emulator_over_node(kata.get("central_node"), current)
        if refused:
            print(f"{command}: {refused}", file=sys.stderr)
            return False
        named: dict[str, object] = {k: kata[k] for k in KATA_FILE_FIELDS if k in kata}
        if "central_node" in kata:  # the emulator's address is the one it listens on now
            named |= {"central_node_address": address, "central_node_port": port}
        elif "central_node_port" in kata:
            named["central_node_port"] = port
        try:
            events, said = file_changes(current, named, kata.get("protection"), now)
        except InvalidCommand as exc:
            print(f"{command}: [kata] refused by the settings in force: {exc}",
                  file=sys.stderr)
            return False
        for line in undone(events, set_by):
            print(f"{command}: {line}", file=sys.stderr)
    if events:
        producer = TransactionalProducer(
            kafka, PRINCIPALS["admin"].transactional_id(kafka.topic_prefix, "admin-up"))
        producer.begin()
        producer.produce(Outgoing.event(TopicNames(kafka.topic_prefix).control, e)
                         for e in events)
        producer.commit()
        producer.close()
        for line in said:
            print(line, flush=True)
    return True
