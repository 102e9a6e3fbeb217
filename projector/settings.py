"""The projector's own settings (the Kafka ones are `eventlog.settings.KafkaSettings`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from katagate.eventlog.config_file import FileSettings
from katagate.eventlog.health import DEFAULT_STALL_S, StallSeconds
from katagate.eventlog.listen import LOOPBACK, ListenHost, refuse_metrics_on

# A name a client may put in Host: a DNS name or IPv4 address, or a bracketed IPv6 address,
# with an optional port.
HOST_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$")


class ProjectorSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_PROJECTOR_", frozen=True,
                                      extra="ignore")
    config_section: ClassVar[str] = "projector"

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: a free port
    state_dir: Path = Path(".katagate/projector")
    snapshot_interval_s: float = Field(default=5.0, gt=0, le=3600)
    rebuild: bool = False  # ignore the snapshot and read every topic from offset 0
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    poll_timeout_s: float = Field(default=0.1, gt=0, le=5)

    # Who may read the views. The read tokens' digests (None: <state_dir>/tokens.json).
    tokens_file: Path | None = None
    # The names a request's Host may carry, each with or without the listen port (a name
    # given with a port matches that port only). None: 127.0.0.1, localhost, [::1] and
    # `host`. A DNS-rebinding page sends its own name, so it is refused (421).
    allowed_hosts: list[str] | None = Field(default=None, min_length=1)
    # A client that has not sent a whole request head (or, kept alive, a next one) by then
    # is cut off; so is one that does not take its answer.
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Requests served at once; one more is answered 503 with Retry-After at once. Only a
    # whole, authenticated request takes a place: idle and slow connections do not.
    max_requests: int = Field(default=32, ge=1, le=1024)
    # Open connections; one more is answered 503 and closed at once: the descriptors left
    # under the process's limit (often 1024) are Kafka's and SQLite's.
    max_connections: int = Field(default=512, ge=1, le=65536)

    # Prometheus metrics on their own listener, unauthenticated (None: not served).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback unless told otherwise: 0.0.0.0 in a container, for Prometheus to reach it.
    metrics_host: ListenHost = LOOPBACK
    # /healthz answers 503 when a loop of the stage has not polled for this long (5-3600 s).
    health_stall_s: StallSeconds = DEFAULT_STALL_S

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if not HOST_NAME.fullmatch(name):
                raise ValueError(f"not a host name (with an optional :port): {name[:80]!r}")
        return value

    @model_validator(mode="after")
    def _metrics_apart(self) -> Self:
        refuse_metrics_on("projector", self.host, self.port, self.metrics_host,
                          self.metrics_port)
        return self

    @property
    def token_path(self) -> Path:
        return self.tokens_file or self.state_dir / "tokens.json"
