"""The decider's own settings: where to deliver, how long to retry. KATA settings and rules are
control events, not these."""

from __future__ import annotations

import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventlog.listen import LOOPBACK, ListenHost


class DeciderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_DECIDER_", frozen=True, extra="ignore")

    # Serve Prometheus metrics on metrics_host:PORT (None: not served).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback unless told otherwise: 0.0.0.0 in a container, for Prometheus to reach it.
    metrics_host: ListenHost = LOOPBACK
    instance_id: str = Field(
        # Stable across restarts: the transactional id and the static group membership derive
        # from it, so a restarted instance fences its predecessor's open transaction at once.
        # Two instances on one host need distinct values.
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
    )
    # The next-hop MTA every message (and NDR) is handed to.
    next_hop_host: str = Field(default="127.0.0.1", min_length=1)
    next_hop_port: int = Field(default=2526, ge=1, le=65535)
    next_hop_starttls: str = Field(default="opportunistic",
                                   pattern=r"^(never|opportunistic|required)$")
    helo_name: str = Field(default_factory=socket.getfqdn, min_length=1, max_length=255)
    smtp_timeout_s: float = Field(default=60.0, gt=0, le=600)
    # Messages carried out at once in a batch: each reads its message and talks SMTP, which
    # is waiting, not work.
    delivery_concurrency: int = Field(default=8, ge=1, le=64)
    # Deferred deliveries are retried with backoff for this long, then fail with a DSN.
    retry_period_s: int = Field(default=5 * 24 * 3600, ge=60, le=30 * 24 * 3600)
    retry_first_s: float = Field(default=30.0, gt=0, le=3600)
