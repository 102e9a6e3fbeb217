"""`kata-emulator ...`: serve, sensors, faults, rotate-key, expire-cert, fingerprint, admin,
console.

Usable as `python -m kata_emulator` and as `katagate kata-emulator` (through `register`).
Exit codes: 0 done, 1 failed (e.g. an unknown sensor), 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import getpass
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from katagate.kata_emulator import faults as F
from katagate.kata_emulator.console import Console
from katagate.kata_emulator.errors import EmulatorError
from katagate.kata_emulator.keys import expire_certificate, load_server_key, rotate_server_key
from katagate.kata_emulator.store import Sensor, Store

Run = Callable[[argparse.Namespace], int]
DEFAULT_STATE = os.environ.get("KATA_EMULATOR_STATE", "kata-emulator-state")


def register(commands: Any) -> None:
    """Add `kata-emulator` to another program's subcommands (argparse subparsers)."""
    parser = commands.add_parser(
        "kata-emulator", help="run and administer the KATA Central Node emulator",
        description=__doc__.splitlines()[0],
    )
    _add_actions(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kata-emulator", description=__doc__.splitlines()[0])
    _add_actions(parser)
    args = parser.parse_args(argv)
    run: Run = args.run
    return run(args)


def _add_actions(parser: argparse.ArgumentParser) -> None:
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state", type=Path, default=Path(DEFAULT_STATE), metavar="DIR",
                       help="state folder (default $KATA_EMULATOR_STATE or ./%(default)s)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", parents=[state], help="serve the KATA scanner API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8443, help="0 picks a free port")
    serve.add_argument("--rules", type=Path, help="verdict rules (JSON), re-read on change")
    serve.add_argument("--seed", type=int, help="seed for latency and fault draws")
    serve.add_argument("--log-level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(run=_guard(_serve))

    sensors = actions.add_parser("sensors", help="integration requests from KSMG sensors")
    which = sensors.add_subparsers(dest="sensors_action", required=True, metavar="ACTION")
    listing = which.add_parser("list", parents=[state], help="all sensors; * = unconfirmed")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_guard(_sensors_list))
    for name, run, text in (
        ("show", _sensors_show, "one sensor, with both key fingerprints"),
        ("accept", functools.partial(_decide, "accepted"), "accept an integration request"),
        ("reject", functools.partial(_decide, "rejected"), "reject an integration request"),
        ("remove", _sensors_remove, "forget a sensor and its scans"),
    ):
        leaf = which.add_parser(name, parents=[state], help=text)
        leaf.add_argument("sensor_id", metavar="ID")
        leaf.set_defaults(run=_guard(run))

    faults = actions.add_parser("faults", help="latency and injected faults (live)")
    which = faults.add_subparsers(dest="faults_action", required=True, metavar="ACTION")
    show = which.add_parser("show", parents=[state], help="the current settings")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=_guard(_faults_show))
    which.add_parser("reset", parents=[state], help="back to defaults: no faults").set_defaults(
        run=_guard(_faults_reset))
    setter = which.add_parser("set", parents=[state], help="change some settings")
    _fault_options(setter)
    setter.set_defaults(run=_guard(_faults_set))

    scans = actions.add_parser("scans", help="the scans in processing")
    which = scans.add_subparsers(dest="scans_action", required=True, metavar="ACTION")
    which.add_parser("finish", parents=[state],
                     help="every scan in processing is ready now (held verdicts arrive)"
                     ).set_defaults(run=_guard(_scans_finish))
    which.add_parser("count", parents=[state],
                     help="scans accepted by sensor since the state began, as JSON"
                     ).set_defaults(run=_guard(_scans_count))

    actions.add_parser("rotate-key", parents=[state],
                       help="replace the server key (the swapped-key fault)").set_defaults(
        run=_guard(_rotate_key))
    actions.add_parser("expire-cert", parents=[state],
                       help="re-issue the certificate, same key, expired since yesterday"
                       ).set_defaults(run=_guard(_expire_cert))
    actions.add_parser("fingerprint", parents=[state],
                       help="print the server key fingerprint").set_defaults(
        run=_guard(_fingerprint))

    admin = actions.add_parser("admin", help="the console's administrator account")
    which = admin.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    password = which.add_parser("set-password", parents=[state],
                                help="set the password (from stdin or --password-file)")
    password.add_argument("--name", default="admin", help="account name (default admin)")
    password.add_argument("--password-file", type=Path)
    password.set_defaults(run=_guard(_set_password))

    actions.add_parser("console", parents=[state],
                       help="the administrator console (accept or reject sensors)").set_defaults(
        run=_guard(_console))


def _fault_options(parser: argparse.ArgumentParser) -> None:
    def checked(check: Callable[[str], object]) -> Callable[[str], object]:
        def parse(text: str) -> object:
            try:
                return check(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return parse

    add = parser.add_argument
    add("--latency", type=checked(F.check_latency), metavar="SPEC",
        help="seconds a scan stays processing: S, uniform:MIN:MAX or exp:MEAN")
    add("--concurrency-limit", type=checked(
        lambda t: F.check_int("concurrency_limit", t, 0, F.MAX_CONCURRENCY)), metavar="N",
        help="scans in processing per sensor before 429")
    add("--max-object-bytes", type=checked(
        lambda t: F.check_int("max_object_bytes", t, 1, F.MAX_OBJECT_BYTES)), metavar="N",
        help="larger objects get 413")
    add("--hang-seconds", type=checked(lambda t: F.check_seconds("hang_seconds", t)),
        metavar="S", help="how long a hanging request sleeps")
    for name, text in (
        ("error_rate", "share of requests answered 500"),
        ("hang_rate", "share of requests that hang before answering"),
        ("malformed_rate", "share of 200 answers with a garbage body"),
        ("timeout_rate", "share of scans ending in state timeout"),
        ("verdict_error_rate", "share of scans ending in state error"),
    ):
        add(F.option_name(name), type=checked(functools.partial(F.check_rate, name)),
            metavar="X", help=f"{text} (0..1)")


def _guard(run: Run) -> Run:
    @functools.wraps(run)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except EmulatorError as exc:
            print(f"kata-emulator: {exc}", file=sys.stderr)
            return 1
    return guarded


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be a number in 0..65535, not {text!r}")
    return int(text)


def _serve(args: argparse.Namespace) -> int:
    try:
        from katagate.kata_emulator.server import make_server  # pyOpenSSL only where it is needed
    except ModuleNotFoundError as exc:
        if exc.name != "OpenSSL":
            raise
        # A production install has no extras; say which one the emulator needs.
        raise EmulatorError("serving needs pyOpenSSL, which katagate's emulator extra installs: "
                            "pip install 'katagate[emulator]'") from exc

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(args.state, args.host, args.port, args.rules, args.seed)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    print(f"kata-emulator listening on https://{shown}:{port} "
          f"fingerprint={server.contexts.fingerprint}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _store(args: argparse.Namespace, *, create: bool = False) -> Store:
    return Store(args.state, create=create)


def _sensors_list(args: argparse.Namespace) -> int:
    sensors = _store(args).sensors()
    if args.json:
        print(json.dumps([_sensor_json(s) for s in sensors], indent=2))
        return 0
    if not sensors:
        print("no KSMG sensor has connected yet")
        return 0
    print(f"  {'SENSOR ID':<24} {'IP ADDRESS':<15} {'STATUS':<11} FINGERPRINT")
    for s in sensors:
        mark = "*" if s.status == "pending" else " "
        print(f"{mark} {s.sensor_id:<24} {s.ip:<15} {_status(s):<11} {s.fingerprint}")
    print("(* = unconfirmed: accept or reject it)")
    return 0


def _sensors_show(args: argparse.Namespace) -> int:
    sensor = _store(args).sensor(args.sensor_id)
    for key, value in _sensor_json(sensor).items():
        print(f"{key + ':':<22} {value}")
    print(f"{'centralNodeFingerprint:':<22} {load_server_key(args.state).fingerprint}")
    print(sensor.cert_pem, end="")
    return 0


def _decide(status: str, args: argparse.Namespace) -> int:
    import time

    sensor = _store(args).decide(args.sensor_id, status, time.time())
    print(f"sensor {sensor.sensor_id} {status} (key {sensor.fingerprint})")
    return 0


def _sensors_remove(args: argparse.Namespace) -> int:
    _store(args).remove(args.sensor_id)
    print(f"sensor {args.sensor_id} removed")
    return 0


def _faults_show(args: argparse.Namespace) -> int:
    faults = _store(args, create=True).faults()
    if args.json:
        print(json.dumps(faults.to_dict(), indent=2))
    else:
        for key, value in faults.to_dict().items():
            print(f"{F.option_name(key)[2:]:<20} {value}")
    return 0


def _faults_set(args: argparse.Namespace) -> int:
    store = _store(args, create=True)
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(F.Faults)
               if getattr(args, f.name, None) is not None}
    if not changes:
        print("kata-emulator faults set: give at least one option (see --help)",
              file=sys.stderr)
        return 2
    store.set_faults(dataclasses.replace(store.faults(), **changes))
    return _faults_show(argparse.Namespace(state=args.state, json=False))


def _faults_reset(args: argparse.Namespace) -> int:
    _store(args, create=True).set_faults(F.Faults())
    return _faults_show(argparse.Namespace(state=args.state, json=False))


def _scans_count(args: argparse.Namespace) -> int:
    print(json.dumps(_store(args, create=True).submissions(), sort_keys=True))
    return 0


def _scans_finish(args: argparse.Namespace) -> int:
    finished = _store(args, create=True).finish_now(time.time())
    print(f"{finished} scans ready now")
    return 0


def _expire_cert(args: argparse.Namespace) -> int:
    _store(args, create=True)
    server_key = expire_certificate(args.state)
    print(f"certificate re-issued, expired {server_key.cert.not_valid_after_utc:%Y-%m-%d}; "
          f"key unchanged: {server_key.fingerprint}")
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    _store(args, create=True)  # makes the folder, private
    old = load_server_key(args.state).fingerprint
    new = rotate_server_key(args.state).fingerprint
    print(f"server key replaced: {old} -> {new}")
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    _store(args, create=True)
    print(load_server_key(args.state).fingerprint)
    return 0


def _set_password(args: argparse.Namespace) -> int:
    if args.password_file is not None:
        try:
            lines = args.password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise EmulatorError(f"--password-file: {exc}") from None
        password = lines[0] if lines else ""
    elif sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat the new password: ") != password:
            print("kata-emulator: the passwords differ; nothing changed", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("kata-emulator: the password must not be empty", file=sys.stderr)
        return 2
    _store(args, create=True).set_admin_password(args.name, password)
    print(f"password set for administrator {args.name!r}")
    return 0


def _console(args: argparse.Namespace) -> int:
    return Console(_store(args), args.state).run()


def _status(sensor: Sensor) -> str:
    return "unconfirmed" if sensor.status == "pending" else sensor.status


def _sensor_json(sensor: Sensor) -> dict[str, object]:
    def when(epoch: float | None) -> str | None:
        if epoch is None:
            return None
        return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()

    return {
        "sensorId": sensor.sensor_id, "ip": sensor.ip, "status": sensor.status,
        "confirmed": sensor.status == "accepted", "fingerprint": sensor.fingerprint,
        "firstSeen": when(sensor.first_seen), "lastSeen": when(sensor.last_seen),
        "decidedAt": when(sensor.decided_at),
    }
