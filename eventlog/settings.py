"""How to reach the cluster and name the topics: one frozen settings object, read at entry points.

`KAFKA_BOOTSTRAP_SERVERS` is the conventional variable every tool here honours; the rest use the
`KATAGATE_` prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from katagate.eventlog.config_file import FileSettings


class KafkaSettings(FileSettings):
    model_config = SettingsConfigDict(
        env_prefix="KATAGATE_", frozen=True, extra="ignore", populate_by_name=True
    )
    config_section: ClassVar[str] = "kafka"
    file_excluded: ClassVar[tuple[str, ...]] = ("principal",)  # each process sets its own

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "KATAGATE_BOOTSTRAP_SERVERS"),
        min_length=1,
    )
    # Every topic name starts with this, so tests (and several gateways on one cluster) get their
    # own namespace.
    topic_prefix: str = Field(default="katagate", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    mail_partitions: int = Field(default=6, ge=1, le=1000)
    # -1 keeps records forever: the mail and quarantine logs are the audit trail.
    mail_retention_ms: int = Field(default=-1, ge=-1)
    raw_retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=3600 * 1000)
    # No Backup retention here: `katagate.backup` is compacted and keeps a copy until the Backup
    # ledger removes it (`backup_max_age_days`, `backup_max_bytes`: settings of the control log).
    # Short, so that a producer that died mid-transaction stalls read_committed readers briefly.
    transaction_timeout_ms: int = Field(default=60_000, ge=1000, le=900_000)
    # A bound on any single blocking broker call (metadata, commit, admin requests).
    request_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Under load (records waited while the last batch committed), a loop gathers this long
    # before opening its transaction: a transaction costs the broker about ten requests and six
    # records whatever it holds. A record that finds its stage idle never waits.
    loop_linger_ms: int = Field(default=100, ge=0, le=1000)
    # The user's librdkafka properties (TLS, SASL, ...), merged over katagate's own per client:
    # one file for every stage, or a folder with one `<principal>.properties` per stage.
    config_file: Path | None = Field(
        default=None, validation_alias="KATAGATE_KAFKA_CONFIG")
    config_dir: Path | None = Field(
        default=None,
        validation_alias="KATAGATE_KAFKA_CONFIG_DIR")
    # The port of the single-node broker `katagate up` starts when no bootstrap_servers is
    # set (read by `up` alone).
    broker_port: int = Field(default=9092, ge=1, le=65535)
    # Which stage's credentials this process uses (eventlog/principals.py); set by the entry
    # point, it picks the file in `config_dir` and the names of groups and transactional ids.
    principal: str | None = Field(
        default=None, validation_alias="KATAGATE_KAFKA_PRINCIPAL")

    def as_principal(self, name: str) -> KafkaSettings:
        return self.model_copy(update={"principal": name})
