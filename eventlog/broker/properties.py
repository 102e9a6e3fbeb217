"""A KRaft node's configuration (combined broker and controller), rendered as pure text.

One node cannot meet the default replication of Kafka's internal topics, and
`init_transactions` then hangs forever: alone, every internal topic gets factor 1 and min ISR 1.
In a cluster of three or more, factor 3 and min ISR 2: an acknowledged write survives a node.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from katagate.eventlog.broker.tls import BROKER_CN, TlsFiles


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters).
    Never one starting with '-', as Kafka's own Uuid.randomUuid: a command line would take it
    for an option (one id in 64; CI met it)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(*, port: int, controller_port: int, log_dir: Path, node_id: int = 1,
                      voters: dict[int, int] | None = None, advertised_port: int | None = None,
                      internal_port: int | None = None, secure: TlsFiles | None = None) -> str:
    """`voters` maps every node id of the cluster to its controller port (alone: this node).
    `advertised_port`: clients are told to connect there (a fault proxy in front of the
    broker); brokers then talk to each other on `internal_port`, never through the proxy.
    `secure`: clients on SASL_SSL only, brokers and controllers on mutual TLS (see
    secure_properties)."""
    voters = voters or {node_id: controller_port}
    replication = min(3, len(voters))
    min_isr = 2 if replication >= 3 else 1
    client = "SASL_SSL" if secure else "PLAINTEXT"
    listeners = [f"{client}://127.0.0.1:{port}"]
    advertised = [f"{client}://127.0.0.1:{advertised_port or port}"]
    inter_broker = client
    if internal_port is not None:
        listeners.append(f"INTERNAL://127.0.0.1:{internal_port}")
        advertised.append(f"INTERNAL://127.0.0.1:{internal_port}")
        inter_broker = "INTERNAL"
    elif advertised_port is not None or secure is not None:
        raise ValueError("an advertised port other than the listener, or a secure broker, "
                         "needs an internal port")
    protocols = ("SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL" if secure else
                 "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT")
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": ",".join(
            f"{node}@127.0.0.1:{cport}" for node, cport in sorted(voters.items())),
        "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{controller_port}"]),
        "advertised.listeners": ",".join(advertised),
        "listener.security.protocol.map": protocols,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": inter_broker,
        "log.dirs": str(log_dir),
        "num.partitions": 1,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        # A replica that fell behind never becomes leader: that would drop acknowledged writes.
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": replication,
        # Alone, one coordinator partition starts fastest; in a cluster, groups and
        # transactional ids spread their coordinators over the nodes.
        "offsets.topic.num.partitions": 1 if len(voters) == 1 else 6,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 1 if len(voters) == 1 else 6,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
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
        **(secure_properties(secure) if secure else {}),
    }
    lines = [f"# written by katagate; node {node_id} of {len(voters)}, replication {replication}"]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def secure_properties(tls: TlsFiles) -> dict[str, str | int]:
    """Clients authenticate with SCRAM-SHA-512 over TLS; brokers and controllers with their
    certificate (mutual TLS, principal User:broker), so no broker secret is needed before the
    cluster's metadata exists. Every request is authorised; nothing is allowed without an ACL.
    `admin` is the cluster's administrator: it creates topics, users and the ACLs."""
    return {
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(tls.broker_store),
        "ssl.keystore.password": tls.store_password(),
        "ssl.key.password": tls.store_password(),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca_cert),
        # The certificate's subject "CN=broker,O=..." is the principal User:broker.
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),.*$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{BROKER_CN};User:admin",
    }


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
