"""The single-node KRaft broker's configuration, rendered as pure text.

One combined broker+controller cannot meet the default replication of Kafka's internal topics,
and `init_transactions` then hangs forever: every internal topic gets factor 1 and min ISR 1 here.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")


def server_properties(*, port: int, controller_port: int, log_dir: Path) -> str:
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        # Topics are created on purpose with their specification (eventlog.topics), never by a typo.
        "auto.create.topics.enable": "false",
        "num.network.threads": 2,
        "num.io.threads": 2,
        # The cleaner's default 128 MiB dedupe buffer would take a quarter of a 512 MiB heap.
        "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
        # Raw message chunks are at most 1 MiB of payload; leave room for record overhead.
        "message.max.bytes": 2 * 1024 * 1024 + 65536,
        "replica.fetch.max.bytes": 2 * 1024 * 1024 + 65536,
    }
    lines = ["# written by katagate broker start; one local node, replication factor 1"]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def log4j2_properties(log_file: Path) -> str:
    return f"""\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.filePattern = {log_file}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.controller.name = kafka.controller
logger.controller.level = info
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = warn
"""
