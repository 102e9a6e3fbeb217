"""The topics of docs/ARCHITECTURE.md, their layout as data, and an idempotent `ensure_topics`.

Partition counts matter beyond speed: the message id picks the partition, so a topic that exists
with another count is reported, never silently used or grown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewTopic,
)

from katagate.eventlog.errors import TopicError
from katagate.eventlog.settings import KafkaSettings

MiB = 1024 * 1024
DAY_MS = 24 * 3600 * 1000

# The Backup is compacted, with no time retention: a copy leaves the topic only when the Backup
# ledger writes its tombstones (age or size per the settings, or an administrator's delete),
# never earlier. The active segment rolls daily and a dirty segment is compacted within a day,
# so a removed copy's bytes are gone from the brokers within about two days.
BACKUP_CONFIG = {
    "cleanup.policy": "compact",
    "compression.type": "zstd",
    "max.message.bytes": str(2 * MiB),  # as the raw chunks
    "segment.ms": str(DAY_MS),
    "max.compaction.lag.ms": str(DAY_MS),
    "delete.retention.ms": str(DAY_MS),  # how long readers still see a tombstone
}


# The quarantine's usage: one key, compacted, so a reader from the start meets a handful of
# records; segments roll hourly so the superseded ones go soon.
USAGE_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": str(3600 * 1000),
    "max.compaction.lag.ms": str(3600 * 1000),
    "max.message.bytes": str(MiB),
}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    purpose: str = ""


@dataclass(frozen=True)
class TopicNames:
    """The concrete names of one namespace (prefix)."""

    prefix: str

    @property
    def mail(self) -> str:
        return f"{self.prefix}.mail"

    @property
    def raw(self) -> str:
        return f"{self.prefix}.mail.raw"

    @property
    def quarantine(self) -> str:
        return f"{self.prefix}.quarantine"

    @property
    def quarantine_usage(self) -> str:
        return f"{self.prefix}.quarantine.usage"

    @property
    def control(self) -> str:
        return f"{self.prefix}.control"

    @property
    def backup(self) -> str:
        return f"{self.prefix}.backup"

    @property
    def audit(self) -> str:
        return f"{self.prefix}.audit"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    names = TopicNames(settings.topic_prefix)
    n = settings.mail_partitions
    forever = {"retention.ms": "-1", "retention.bytes": "-1"}
    events = {"cleanup.policy": "delete", "compression.type": "zstd", "max.message.bytes": str(MiB)}
    chunks = {
        "cleanup.policy": "delete",
        "compression.type": "zstd",
        # A chunk holds at most 1 MiB of message bytes, plus headers and batch overhead.
        "max.message.bytes": str(2 * MiB),
    }
    return [
        TopicSpec(names.mail, n, {**events, "retention.ms": str(settings.mail_retention_ms)},
                  "lifecycle events of each message, keyed by message id"),
        TopicSpec(names.raw, n, {**chunks, "retention.ms": str(settings.raw_retention_ms)},
                  "raw RFC 5322 bytes in chunks of at most 1 MiB"),
        TopicSpec(names.quarantine, 1, {**events, **forever},
                  "the KATA quarantine ledger; one partition, one writer"),
        TopicSpec(names.quarantine_usage, 1, USAGE_CONFIG,
                  "the quarantine's usage against its limits (ingest's tempfail); compacted"),
        TopicSpec(names.control, 1, {**events, **forever},
                  "settings, rules, toggles, keys and connection events"),
        TopicSpec(names.backup, n, BACKUP_CONFIG,
                  "Backup copies of originals, a key per chunk; removed by tombstones only"),
        TopicSpec(names.audit, 1, {**events, **forever},
                  "signed checkpoints over the other topics"),
        TopicSpec(names.deadletter, 1, {**chunks, **forever},
                  "records a stage could not process, with the reason in headers"),
    ]


def ensure_topics(
    admin: AdminClient, settings: KafkaSettings, specs: list[TopicSpec] | None = None
) -> list[str]:
    """Create the topics that are missing; return the names created. Idempotent."""
    specs = specs if specs is not None else topic_specs(settings)
    metadata = admin.list_topics(timeout=settings.request_timeout_s)
    brokers = len(metadata.brokers)
    if brokers == 0:
        raise TopicError("the cluster reports no brokers")
    replication = min(3, brokers)
    existing = metadata.topics
    for spec in specs:
        if spec.name in existing:
            have = len(existing[spec.name].partitions)
            if have != spec.partitions:
                raise TopicError(
                    f"topic {spec.name} has {have} partitions, katagate needs {spec.partitions}: "
                    "message ids would map to other partitions; migrate it or use another "
                    "prefix"
                )
    missing = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=replication,
            # With three or more brokers, an acknowledged write survives the loss of one.
            config={**spec.config, **({"min.insync.replicas": "2"} if brokers >= 3 else {})},
        )
        for spec in specs
        if spec.name not in existing
    ]
    if not missing:
        return []
    created: list[str] = []
    futures = admin.create_topics(missing, request_timeout=settings.request_timeout_s)
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            # Another stage starting at the same moment may have created it first.
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            if exc.args[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                      KafkaError.CLUSTER_AUTHORIZATION_FAILED):
                raise TopicError(
                    f"topic {name} is missing (or this principal may not see it) and this "
                    f"principal may not create it: run `katagate topics create` as the admin "
                    f"principal, and `katagate acls apply`") from exc
            raise TopicError(f"creating topic {name} failed: {exc}") from exc
    return created
