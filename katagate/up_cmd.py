"""`katagate up`: run the gateway locally. For now: the broker (unless a cluster is named) and
the topics; the stages join as they are built."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from eventlog.broker import LocalBroker
from eventlog.settings import KafkaSettings
from eventlog.topics import ensure_topics


def register(commands: Any) -> None:
    parser = commands.add_parser("up", help="run the gateway locally (broker, topics, stages)")
    parser.add_argument("--port", type=int, default=None, help="broker port (default 9092)")
    parser.add_argument("--data", type=Path, default=None, help="broker folder")
    parser.set_defaults(run=_up)


def _up(args: argparse.Namespace) -> int:
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        status = LocalBroker(args.data).start(port=args.port)
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = status.bootstrap_servers or ""
        print(f"local broker running (pid {status.pid}); stop it with: katagate broker stop")
    settings = KafkaSettings()
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    created = ensure_topics(admin, settings)
    print(f"topics ready ({len(created)} created) under prefix {settings.topic_prefix!r}")
    print(f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers}")
    return 0
