"""`katagate broker start|stop|status`: the local single-node Kafka broker."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from katagate.eventlog.broker import LocalBroker
from katagate.eventlog.broker.classpath import classpath_dir, default_cache_dir, kafka_version


def register(commands: Any) -> None:
    parser = commands.add_parser("broker", help="run a local single-node Kafka broker (no Docker)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="fetch (once), format (once) and start the broker")
    start.add_argument("--port", type=_port, default=None, help="listener port (default 9092)")
    start.add_argument("--data", type=Path, default=None, help="broker folder")
    start.add_argument("--secure", action="store_true",
                       help="SASL_SSL (SCRAM-SHA-512) for clients on a CA of its own, no "
                            "plaintext listener, ACLs enforced; one user per principal")
    start.set_defaults(run=_start)
    stop = actions.add_parser("stop", help="stop the broker cleanly (SIGTERM, then wait)")
    stop.add_argument("--data", type=Path, default=None)
    stop.set_defaults(run=_stop)
    status = actions.add_parser("status", help="say whether the broker runs")
    status.add_argument("--data", type=Path, default=None)
    status.set_defaults(run=_status)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--port must be a number in 1-65535, not {text!r}"
        ) from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be in 1-65535, not {port}")
    return port


def _start(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.data, secure=True if args.secure else None)
    cached = (classpath_dir(default_cache_dir()) / ".complete").exists()
    if not cached:
        print(f"fetching Apache Kafka {kafka_version()} from Maven Central (once) ...", flush=True)
    began = time.monotonic()
    already = broker.status().running
    status = broker.start(port=args.port)
    word = "already running" if already else f"started in {time.monotonic() - began:.1f} s"
    print(f"broker {word}: pid {status.pid}, folder {broker.data_dir}")
    print_endpoints(status.bootstrap_servers, status.clients_dir)
    return 0


def print_endpoints(bootstrap: str | None, clients_dir: Path | None) -> None:
    """The last lines: what the gateway's commands need to reach this Kafka (`export` them)."""
    if clients_dir is not None:
        print(f"KATAGATE_KAFKA_CONFIG_DIR={clients_dir}")
    print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}")


def _stop(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.data)
    print("broker stopped" if broker.stop() else "broker was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    broker = LocalBroker(args.data)
    status = broker.status()
    if status.running:
        print(f"running: pid {status.pid}, KAFKA_BOOTSTRAP_SERVERS={status.bootstrap_servers}"
              + (f", KATAGATE_KAFKA_CONFIG_DIR={status.clients_dir}" if status.clients_dir
                 else ""))
        return 0
    print(f"not running (folder {broker.data_dir})")
    return 3
