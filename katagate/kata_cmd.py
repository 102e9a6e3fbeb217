"""`katagate kata state|pin|enable|disable`: the KATA connection state window, pinning the
Central Node's key by hand, and the global KATA protection switch."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from katagate.admin.central_node import InvalidCommand, pin_key
from katagate.admin.control_writer import admin_transactional_id
from katagate.admin.labels import CONNECTION_STATES
from katagate.admin.settings import set_protection
from katagate.admin_write import (
    add_note_option,
    add_write_options,
    checked_note,
    cli_actor,
    commit,
    noted,
)
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames
from katagate.scanner.connection import ConnectionView
from katagate.scanner.control_view import ControlView
from katagate.schemas import ControlState, Event


def register(commands: Any) -> None:
    parser = commands.add_parser("kata", help="the KATA Central Node connection")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    state = actions.add_parser("state", help="the KATA connection state window")
    state.add_argument("--json", action="store_true", help="machine-readable output")
    state.set_defaults(run=_state)
    pin = actions.add_parser("pin", help="pin the Central Node's public key fingerprint")
    pin.add_argument("fingerprint", help="SHA-256 of its public key, as KATA shows it")
    add_note_option(pin)
    pin.set_defaults(run=_pin)
    for name, enabled in (("enable", True), ("disable", False)):
        switch = actions.add_parser(name, help=f"{name} KATA protection (global switch)")
        add_write_options(switch)
        switch.set_defaults(run=_switch, enabled=enabled)


def current_view(settings: KafkaSettings, timeout_s: float = 30.0) -> ConnectionView:
    control = ControlView(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while not control.caught_up and time.monotonic() < deadline:
            control.pump(0.2)
        return control.view
    finally:
        control.close()


def _state(args: argparse.Namespace) -> int:
    view = current_view(KafkaSettings(principal="admin"))
    # Connected refers to the node it was recorded for; a moved address is not connected yet.
    state = "connecting" if view.state == "connected" and view.central_node != view.target \
        else view.state
    confirm = view.observed if view.pin_required and view.effective_pin is None else None
    not_after = view.observed_not_after.isoformat() if view.observed_not_after else None
    window = {
        "central_node_address": str(view.settings.central_node_address or ""),
        "central_node_port": view.settings.central_node_port,
        "connection_state": state,
        "since": view.since.isoformat() if view.since else None,
        "detail": view.detail,
        "ksmg_public_key_fingerprint": view.sensor_fingerprint,
        "sensor_id": view.sensor_id,
        "kata_public_key_fingerprint": view.observed,
        "kata_public_key_pinned": view.effective_pin,
        "kata_certificate_not_after": not_after,
        "kata_public_key_confirmation_required": confirm,
    }
    if args.json:
        print(json.dumps(window, indent=2))
        return 0
    rows = [
        ("KATA Central Node IPv4-address", window["central_node_address"] or "(not set)"),
        ("Connection state", CONNECTION_STATES[state]
         + (f" since {window['since']}" if window["since"] else "")),
        ("KSMG public key fingerprint", view.sensor_fingerprint or "(no key yet)"),
        ("KATA public key fingerprint", view.observed or "(not seen yet)"),
        ("KATA key pinned", "yes" if view.effective_pin and view.effective_pin == view.observed
         else (view.effective_pin or "no")),
    ]
    if not_after:
        rows.append(("KATA certificate valid until", not_after))
    if confirm:
        rows.append(("Action needed", "an administrator must confirm the KATA public key "
                     f"fingerprint above with KATA's, then run: katagate kata pin {confirm}"))
    if view.detail:
        rows.append(("Detail", view.detail))
    for name, value in rows:
        print(f"{name + ':':32} {value}")
    return 0


def _pin(args: argparse.Namespace) -> int:
    settings = KafkaSettings(principal="admin")
    view = current_view(settings)
    try:
        event = noted(pin_key(view.target, args.fingerprint, cli_actor(), datetime.now(UTC)),
                      checked_note(args.note))
    except InvalidCommand as exc:
        print(f"katagate kata pin: {exc}", file=sys.stderr)
        return 2
    producer = TransactionalProducer(settings, admin_transactional_id(settings.topic_prefix))
    producer.begin()
    producer.produce([Outgoing.event(TopicNames(settings.topic_prefix).control, event)])
    producer.commit()
    producer.close()
    print(f"pinned {event.fingerprint} for {view.target.address}:{view.target.port}"
          if view.target else "pinned")
    return 0


def _switched(_event: Event, _before: ControlState, after: ControlState) -> str:
    text = (f"KATA protection {'enabled' if after.protection_enabled else 'disabled'} "
            f"(configuration version {after.version})")
    if after.protection_enabled and after.settings.central_node_address is None:
        text += ("\nnote: no KATA Central Node address is set, so messages are skipped "
                 "(not connected) until `katagate settings set --central-node-address` is run")
    return text


def _switch(args: argparse.Namespace) -> int:
    return commit(
        args, lambda state, ctx: set_protection(state, args.enabled, **ctx), _switched)
