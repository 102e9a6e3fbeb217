"""`katagate up`'s [kata]: the KATA Protection settings into the control log, all of them at the
first start, and afterwards what the file names differently from the settings in force, as a
settings change by the actor `config-file` (admin/first_start.py decides; this writes)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import Any

from katagate.admin.errors import InvalidCommand
from katagate.admin.first_start import file_changes, first_start_events
from katagate.eventlog.folded import FoldedTopic
from katagate.eventlog.principals import PRINCIPALS
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.schemas import ControlState, KataSettings, evolve_control

# [kata] keys that are KataSettings fields under the same name (the node is resolved apart).
KATA_FILE_FIELDS = ("response_timeout_s", "quarantine_max_bytes", "quarantine_max_messages",
                    "poll_interval_s")


def emulator_over_node(central_node: object, current: ControlState) -> str | None:
    """Refused: the file's `central_node = "emulator"` replacing a Central Node an
    administrator set (any address but the loopback the emulator listens on). Mail would then
    be scanned by a stand-in whose verdicts mean nothing while the console says *Connected*."""
    node = current.settings.central_node_address
    if central_node != "emulator" or node is None or node.is_loopback:
        return None
    return (f"[kata] central_node: the file says \"emulator\", the settings in force name the "
            f"Central Node {node}:{current.settings.central_node_port}; katagate up does not "
            f"replace a Central Node by the emulator: set central_node = \"{node}\" in the "
            "file, or remove the key (katagate settings set to change the node)")


def write_kata_settings(kafka: KafkaSettings, kata: dict[str, Any], address: str,
                        port: int) -> bool:
    """[kata] into the control log: all of it at the first start; afterwards what the file
    names that the log does not hold, as a settings change by `config-file`, one line per
    setting. False (said on stderr) when the control state refuses a value."""
    control = FoldedTopic(kafka, TopicNames(kafka.topic_prefix).control, ControlState(),
                          evolve_control)
    try:
        control.wait_caught_up(30)
        current = control.value
    finally:
        control.close()
    now = datetime.now(UTC)
    if current.version == 0:
        settings = KataSettings(
            central_node_address=IPv4Address(address), central_node_port=port,
            **{k: kata[k] for k in KATA_FILE_FIELDS if k in kata},
        )
        events = first_start_events(current, settings, bool(kata.get("protection", True)),
                                    "katagate-up", now)
        said = [f"KATA settings written (first start): Central Node {address}:{port}"]
    else:
        refused = emulator_over_node(kata.get("central_node"), current)
        if refused:
            print(f"katagate up: {refused}", file=sys.stderr)
            return False
        named: dict[str, object] = {k: kata[k] for k in KATA_FILE_FIELDS if k in kata}
        if "central_node" in kata:  # the emulator's address is the one it listens on now
            named |= {"central_node_address": address, "central_node_port": port}
        elif "central_node_port" in kata:
            named["central_node_port"] = port
        try:
            events, said = file_changes(current, named, kata.get("protection"), now)
        except InvalidCommand as exc:
            print(f"katagate up: [kata] refused by the settings in force: {exc}",
                  file=sys.stderr)
            return False
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
