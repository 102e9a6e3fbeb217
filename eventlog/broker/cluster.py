"""A local KRaft cluster of N combined broker+controller nodes from the same Maven jars, on
loopback ports: the replicated Kafka that `katagate cluster start` runs and the failover tests
kill nodes of.

The folder holds `cluster.json` (the shared cluster id and every node's ports, fixed at the
first start: they are part of the formatted quorum) and one LocalBroker folder per node.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from katagate.eventlog.broker.launcher import (
    BrokerStatus,
    LocalBroker,
    Membership,
    default_data_dir,
    free_port_run,
    port_answers,
)
from katagate.eventlog.broker.properties import new_cluster_id
from katagate.eventlog.broker.tls import TlsFiles
from katagate.eventlog.broker.users import ensure_users
from katagate.eventlog.errors import BrokerError

MAX_NODES = 9


@dataclass(frozen=True)
class NodePorts:
    node_id: int
    port: int
    controller_port: int
    internal_port: int | None = None  # a secure cluster's mutual-TLS listener


@dataclass(frozen=True)
class Layout:
    cluster_id: str
    nodes: tuple[NodePorts, ...]
    secure: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def to_json(self) -> str:
        return json.dumps({"cluster_id": self.cluster_id, "secure": self.secure,
                           "nodes": [node.__dict__ for node in self.nodes]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        data = json.loads(text)
        return cls(data["cluster_id"], tuple(NodePorts(**node) for node in data["nodes"]),
                   bool(data.get("secure", False)))


def default_cluster_dir() -> Path:
    return default_data_dir().parent / "cluster"


class LocalCluster:
    def __init__(self, data_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_cluster_dir()).resolve()
        self.cache_dir = cache_dir

    @property
    def layout_file(self) -> Path:
        return self.data_dir / "cluster.json"

    def layout(self) -> Layout | None:
        return Layout.from_json(self.layout_file.read_text()) if self.layout_file.exists() else None

    def _plan(self, brokers: int, port: int | None, secure: bool) -> Layout:
        if not 1 <= brokers <= MAX_NODES:
            raise BrokerError(f"--brokers must be in 1..{MAX_NODES}, not {brokers}")
        existing = self.layout()
        if existing is not None:
            if len(existing.nodes) != brokers:
                raise BrokerError(
                    f"the cluster in {self.data_dir} has {len(existing.nodes)} nodes, not "
                    f"{brokers}: its quorum is formatted; remove the folder to start another")
            if secure and not existing.secure:
                raise BrokerError(f"the cluster in {self.data_dir} was set up without "
                                  "--secure; remove the folder to start a secure one")
            return existing
        base = port if port is not None else free_port_run(brokers)
        controllers = free_port_run(brokers)
        internal = free_port_run(brokers) if secure else None
        layout = Layout(new_cluster_id(), tuple(
            NodePorts(i + 1, base + i, controllers + i,
                      None if internal is None else internal + i) for i in range(brokers)),
            secure)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.layout_file.write_text(layout.to_json() + "\n")
        return layout

    @property
    def clients_dir(self) -> Path:
        """A secure cluster's principals' client properties (KATAGATE_KAFKA_CONFIG_DIR)."""
        return self.data_dir / "clients"

    def node(self, node_id: int) -> LocalBroker:
        layout = self._require()
        voters = {n.node_id: n.controller_port for n in layout.nodes}
        spec = self._spec(layout, node_id)
        # One CA and one broker certificate for every node: all on loopback.
        return LocalBroker(self.data_dir / f"node-{node_id}", self.cache_dir,
                           membership=Membership(node_id, voters, layout.cluster_id),
                           internal_port=spec.internal_port, secure=layout.secure,
                           tls_dir=self.data_dir / "tls")

    def start(self, brokers: int = 3, port: int | None = None,
              timeout: float = 180.0, secure: bool = False) -> Layout:
        """Every node started, then each waited for until it sees all of them; a secure
        cluster's users and their client properties made (in `clients_dir`)."""
        layout = self._plan(brokers, port, secure)
        launched = []
        for spec in layout.nodes:
            node = self.node(spec.node_id)
            if not node.status().running and port_answers(spec.port):
                raise BrokerError(f"port {spec.port} on 127.0.0.1 is taken by another program")
            _, process = node.launch(spec.port)
            launched.append((node, spec, process))
        for node, spec, process in launched:
            if process is not None:
                node.wait_ready(process, spec.port, timeout, brokers=len(layout.nodes))
        if layout.secure:
            first = layout.nodes[0]
            assert first.internal_port is not None  # noqa: S101 - a secure layout has them
            ensure_users(TlsFiles(self.data_dir / "tls"), first.internal_port,
                         layout.bootstrap_servers, self.clients_dir)
        return layout

    def start_node(self, node_id: int, timeout: float = 180.0) -> BrokerStatus:
        layout = self._require()
        spec = self._spec(layout, node_id)
        node = self.node(node_id)
        status, process = node.launch(spec.port)
        if process is not None:
            node.wait_ready(process, spec.port, timeout, brokers=len(layout.nodes))
        return status

    def kill_node(self, node_id: int) -> None:
        """kill -9: what a crashed machine looks like to the others."""
        node = self.node(node_id)
        pid = node.status().pid
        if pid is None:
            raise BrokerError(f"node {node_id} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while node.status().running and time.monotonic() < deadline:
            time.sleep(0.05)
        node.stop(timeout=0)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM to every node at once (one by one, the last would wait for a quorum that
        is gone), then wait; the number of nodes that were running."""
        layout = self.layout()
        if layout is None:
            return 0
        nodes = [self.node(spec.node_id) for spec in layout.nodes]
        pids = [(node, node.status().pid) for node in nodes]
        running = [(node, pid) for node, pid in pids if pid is not None]
        for _, pid in running:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node, _ in running:
            node.stop(timeout=max(0.0, deadline - time.monotonic()))
        return len(running)

    def status(self) -> dict[int, BrokerStatus]:
        layout = self.layout()
        if layout is None:
            return {}
        return {spec.node_id: self.node(spec.node_id).status() for spec in layout.nodes}

    def _require(self) -> Layout:
        layout = self.layout()
        if layout is None:
            raise BrokerError(f"no cluster in {self.data_dir}: run `katagate cluster start`")
        return layout

    @staticmethod
    def _spec(layout: Layout, node_id: int) -> NodePorts:
        for spec in layout.nodes:
            if spec.node_id == node_id:
                return spec
        raise BrokerError(f"no node {node_id}: this cluster has nodes 1-{len(layout.nodes)}")
