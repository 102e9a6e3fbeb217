"""The checkpointer's own settings (`KATAGATE_AUDIT_*`), read at entry points only."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from katagate.audit.witness import SUFFIX as WITNESS_SUFFIX
from katagate.audit.witness import witness_file
from katagate.eventlog.config_file import FileSettings
from katagate.eventlog.health import DEFAULT_STALL_S, StallSeconds


def default_key_dir() -> Path:
    return Path.home() / ".local" / "state" / "katagate" / "audit"


class AuditSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_AUDIT_", frozen=True, extra="ignore")
    config_section: ClassVar[str] = "audit"

    # Holds audit.key (mode 0600) and audit.pub; made on first use.
    key_dir: Path = Field(default_factory=default_key_dir)
    # A partition gets a checkpoint after this many new records, or this long after its first
    # uncovered record, whichever comes first.
    every_records: int = Field(default=1000, ge=1, le=10_000_000)
    every_s: float = Field(default=60.0, gt=0, le=86_400)
    # `katagate audit verify` fails when a record older than this is covered by no checkpoint
    # (keep it well above every_s: the checkpointer needs that long to cover a record).
    grace_s: float = Field(default=900.0, gt=0, le=30 * 86_400)
    # Where the checkpointer also appends every checkpoint it writes (JSON lines, fsynced): a
    # file, or an existing folder holding PREFIX.witness.jsonl; unset, the key folder. Point at
    # storage whoever controls Kafka cannot rewrite; `katagate audit verify --witness` reads it.
    witness: Path | None = None
    # Serve Prometheus metrics on metrics_host:metrics_port (None: not served); loopback unless
    # told otherwise (0.0.0.0 in a container, for Prometheus to reach it).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # /healthz answers 503 when a loop of the stage has not polled for this long (5-3600 s).
    health_stall_s: StallSeconds = DEFAULT_STALL_S
    # Names this member in the election; the transactional id is fixed per namespace.
    instance_id: str = Field(default_factory=socket.gethostname,
                             pattern=r"^[A-Za-z0-9._-]{1,100}$")

    def witness_file(self, namespace: str) -> Path:
        if self.witness is None:
            return self.key_dir / f"{namespace}{WITNESS_SUFFIX}"
        return witness_file(self.witness, namespace)
