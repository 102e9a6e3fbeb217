"""`katagate cluster start|stop|status|kill-node|start-node`: a local replicated Kafka cluster
(N KRaft nodes from the Maven jars on loopback ports; replication 3 and min ISR 2 from three
nodes on). The stages take its KAFKA_BOOTSTRAP_SERVERS like any other cluster's."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from katagate.broker_cmd import _port, print_endpoints
from katagate.eventlog.broker.cluster import MAX_NODES, LocalCluster


def register(commands: Any) -> None:
    parser = commands.add_parser("cluster", help="run a local replicated Kafka cluster")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="format (once) and start every node")
    start.add_argument("--brokers", type=_brokers, default=3,
                       help=f"number of nodes, 1-{MAX_NODES} (default 3)")
    start.add_argument("--port", type=_port, default=None,
                       help="first node's client port; the next nodes take the next ones")
    start.add_argument("--data", type=Path, default=None, help="cluster folder")
    start.add_argument("--secure", action="store_true",
                       help="SASL_SSL (SCRAM-SHA-512) for clients, mutual TLS between nodes, "
                            "ACLs enforced; one user per principal")
    start.set_defaults(run=_start)
    for name, text, run in (("stop", "stop every node cleanly", _stop),
                            ("status", "say which nodes run", _status)):
        action = actions.add_parser(name, help=text)
        action.add_argument("--data", type=Path, default=None)
        action.set_defaults(run=run)
    for name, text, run in (("kill-node", "kill -9 one node (a crash)", _kill),
                            ("start-node", "start one node again", _start_node)):
        action = actions.add_parser(name, help=text)
        action.add_argument("node", type=_brokers, help="node id, 1-N")
        action.add_argument("--data", type=Path, default=None)
        action.set_defaults(run=run)


def _brokers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in 1-{MAX_NODES}, not {text!r}"
                                         ) from None
    if not 1 <= value <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"must be in 1-{MAX_NODES}, not {value}")
    return value


def _start(args: argparse.Namespace) -> int:
    cluster = LocalCluster(args.data)
    began = time.monotonic()
    layout = cluster.start(brokers=args.brokers, port=args.port, secure=args.secure)
    print(f"cluster of {len(layout.nodes)} running in {time.monotonic() - began:.1f} s, "
          f"folder {cluster.data_dir}")
    print_endpoints(layout.bootstrap_servers, cluster.clients_dir if layout.secure else None)
    return 0


def _stop(args: argparse.Namespace) -> int:
    stopped = LocalCluster(args.data).stop()
    print(f"{stopped} node(s) stopped" if stopped else "the cluster was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = LocalCluster(args.data)
    statuses = cluster.status()
    if not statuses:
        print(f"no cluster in {cluster.data_dir}")
        return 3
    for node_id, status in statuses.items():
        word = f"running, pid {status.pid}, port {status.port}" if status.running else "stopped"
        print(f"node {node_id}: {word}")
    layout = cluster.layout()
    if layout is not None:
        print_endpoints(layout.bootstrap_servers,
                        cluster.clients_dir if layout.secure else None)
    return 0 if all(s.running for s in statuses.values()) else 3


def _kill(args: argparse.Namespace) -> int:
    LocalCluster(args.data).kill_node(args.node)
    print(f"node {args.node} killed")
    return 0


def _start_node(args: argparse.Namespace) -> int:
    status = LocalCluster(args.data).start_node(args.node)
    print(f"node {args.node} running, pid {status.pid}")
    return 0
