"""`katagate cluster start|status|kill-node|start-node|stop` on a folder of its own: a real
three-node KRaft cluster from the Maven jars, driven as an operator would; and a broker that
cannot start, reported with the tail of its log."""

from __future__ import annotations

import subprocess
import sys

import pytest

from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.broker.cluster import LocalCluster
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings

pytestmark = pytest.mark.kafka


def katagate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "katagate", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


def test_a_three_node_cluster_starts_reports_survives_a_killed_node_and_stops(
        tmp_path, kafka_bootstrap):
    # kafka_bootstrap: the session broker has fetched the jars, so these starts are warm ones.
    folder = tmp_path / "cluster"
    data = ("--data", str(folder))
    started = katagate("cluster", "start", "--brokers", "3", *data)
    try:
        assert started.returncode == 0, started.stderr
        lines = started.stdout.strip().splitlines()
        assert lines[0].startswith("cluster of 3 running in ")
        assert lines[0].endswith(f" s, folder {folder.resolve()}")
        layout = LocalCluster(folder).layout()
        assert layout is not None
        assert [n.node_id for n in layout.nodes] == [1, 2, 3]
        assert lines[-1] == f"KAFKA_BOOTSTRAP_SERVERS={layout.bootstrap_servers}"
        # A client of the cluster sees its three brokers
        metadata = new_admin(KafkaSettings(bootstrap_servers=layout.bootstrap_servers)
                             ).list_topics(timeout=30)
        assert sorted(metadata.brokers) == [1, 2, 3]

        status = katagate("cluster", "status", *data)
        assert status.returncode == 0
        running = LocalCluster(folder).status()
        assert status.stdout.splitlines() == [
            *(f"node {n.node_id}: running, pid {running[n.node_id].pid}, port {n.port}"
              for n in layout.nodes),
            f"KAFKA_BOOTSTRAP_SERVERS={layout.bootstrap_servers}"]

        # When node 2 is killed (a crash), status names it and exits 3
        killed = katagate("cluster", "kill-node", "2", *data)
        assert (killed.returncode, killed.stdout) == (0, "node 2 killed\n")
        status = katagate("cluster", "status", *data)
        assert status.returncode == 3
        assert status.stdout.splitlines()[1] == "node 2: stopped"
        assert status.stdout.splitlines()[0].startswith("node 1: running, pid ")
        assert katagate("cluster", "kill-node", "2", *data).stderr == (
            "katagate cluster: node 2 is not running\n")
        # A node the cluster does not have is named, with the ones it has
        for action in ("kill-node", "start-node"):
            beyond = katagate("cluster", action, "5", *data)
            assert (beyond.returncode, beyond.stderr) == (
                1, "katagate cluster: no node 5: this cluster has nodes 1-3\n")

        # When it is started again, it rejoins on its port
        again = katagate("cluster", "start-node", "2", *data)
        assert again.returncode == 0, again.stderr
        pid = LocalCluster(folder).status()[2].pid
        assert again.stdout == f"node 2 running, pid {pid}\n"
        assert pid != running[2].pid
        assert katagate("cluster", "status", *data).returncode == 0
    finally:
        stopped = katagate("cluster", "stop", *data)
    # Then stop stops all three, and status says so
    assert (stopped.returncode, stopped.stdout) == (0, "3 node(s) stopped\n")
    status = katagate("cluster", "status", *data)
    assert status.returncode == 3
    assert status.stdout.splitlines()[:3] == ["node 1: stopped", "node 2: stopped",
                                              "node 3: stopped"]
    assert katagate("cluster", "stop", *data).stdout == "the cluster was not running\n"


def test_a_broker_that_cannot_start_is_reported_with_the_tail_of_its_log(
        tmp_path, kafka_bootstrap):
    # Given a broker folder whose storage was formatted for another node id
    folder = tmp_path / "broker"
    (folder / "kraft").mkdir(parents=True)
    (folder / "kraft" / "meta.properties").write_text(
        "version=1\nnode.id=7\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n"
        "directory.id=AAAAAAAAAAAAAAAAAAAAAA\n")
    # When it is started, the JVM exits at once
    started = katagate("broker", "start", "--port", str(free_port()), "--data", str(folder))
    # Then the command fails with the broker's own words from its log
    assert started.returncode == 1
    assert started.stderr.startswith(
        "katagate broker: the broker exited with code 1; its log:\n")
    assert "Stored node id 7 doesn't match previous node id 1" in started.stderr
    assert LocalBroker(folder).log_file.exists()
    assert katagate("broker", "status", "--data", str(folder)).returncode == 3
