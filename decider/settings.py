"""The decider's own settings: where to deliver, how long to retry. KATA settings and rules are
control events, not these."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import ClassVar

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from katagate.decider.next_hop_tls import STARTTLS_LEVELS, TlsLevel, ca_file_problem
from katagate.eventlog.config_file import FileSettings
from katagate.eventlog.health import DEFAULT_STALL_S, StallSeconds
from katagate.eventlog.listen import LOOPBACK, ListenHost


class DeciderSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_DECIDER_", frozen=True, extra="ignore")
    config_section: ClassVar[str] = "decider"

    # Serve Prometheus metrics on metrics_host:PORT (None: not served).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback unless told otherwise: 0.0.0.0 in a container, for Prometheus to reach it.
    metrics_host: ListenHost = LOOPBACK
    # /healthz answers 503 when a loop of the stage has not polled for this long (5-3600 s).
    health_stall_s: StallSeconds = DEFAULT_STALL_S
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
    # TLS to the next hop (decider/next_hop_tls.py): Postfix's smtp_tls_security_level, one of
    # none, may, encrypt, verify; unset, from next_hop_starttls, and `may` when neither is set.
    # next_hop_starttls is the older name: never = none, opportunistic = may, required = verify.
    # Both set to different levels is refused.
    next_hop_starttls: str | None = Field(default=None,
                                          pattern=r"^(never|opportunistic|required)$")
    next_hop_tls_security_level: TlsLevel | None = None
    # At level verify: the PEM CA certificates the next hop's chain must end in (these alone);
    # unset, the system's store. Checked at start: a readable file with a certificate.
    next_hop_tls_ca_file: Path | None = None
    # At level verify: the name the certificate must hold (also sent as SNI); unset,
    # next_hop_host (an IP address is then matched against the certificate's IP addresses).
    next_hop_tls_name: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
    helo_name: str = Field(default_factory=socket.getfqdn, min_length=1, max_length=255)
    smtp_timeout_s: float = Field(default=60.0, gt=0, le=600)
    # Messages carried out at once in a batch: each reads its message, talks SMTP and waits for
    # its outcome's acknowledgement, which is waiting, not work. 20 is Postfix's
    # default_destination_concurrency_limit; at 8, apply held the whole path to about 100
    # messages/s here (docs/decisions/0009-apply-concurrency-and-batch.md).
    delivery_concurrency: int = Field(default=20, ge=1, le=64)
    # The message bytes the delivery threads may hold at once: a delivery whose message does not
    # fit waits for others to end (decider/delivery_budget.py). 288 MiB: what 8 threads held at
    # most with messages of 36 MiB, ingest's largest by default.
    delivery_budget_bytes: int = Field(default=288 * 1024 * 1024, ge=1024 * 1024,
                                       le=64 * 1024 * 1024 * 1024)
    # On SIGTERM: the batch's deliveries go on starting for this long, those begun then finish
    # (each SMTP command within smtp_timeout_s), and what they did is committed; deliveries
    # not begun by then are read again at the next start (docs/ARCHITECTURE.md, "Stopping").
    drain_timeout_s: float = Field(default=30.0, ge=0, le=3600)
    # Deferred deliveries are retried with backoff for this long, then fail with a DSN.
    retry_period_s: int = Field(default=5 * 24 * 3600, ge=60, le=30 * 24 * 3600)
    retry_first_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("next_hop_tls_security_level")
    @classmethod
    def _one_level(cls, level: TlsLevel | None, info: ValidationInfo) -> TlsLevel | None:
        starttls = info.data.get("next_hop_starttls")
        if level is not None and starttls is not None and STARTTLS_LEVELS[starttls] != level:
            raise ValueError(f"next_hop_starttls = {starttls} means level "
                             f"{STARTTLS_LEVELS[starttls]}, not {level}: set only one of them")
        return level

    @field_validator("next_hop_tls_ca_file")
    @classmethod
    def _ca_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is None:
            return None
        level = _level(info.data.get("next_hop_tls_security_level"),
                       info.data.get("next_hop_starttls"))
        if level != "verify":
            raise ValueError(f"read only at level verify, and the level is {level}: set "
                             "next_hop_tls_security_level = verify, or remove the CA file")
        problem = ca_file_problem(path)
        if problem:
            raise ValueError(problem)
        return path

    @property
    def next_hop_tls_level(self) -> TlsLevel:
        """The TLS security level in force, from whichever of the two settings is set."""
        return _level(self.next_hop_tls_security_level, self.next_hop_starttls)


def _level(level: TlsLevel | None, starttls: str | None) -> TlsLevel:
    if level is not None:
        return level
    return STARTTLS_LEVELS[starttls] if starttls is not None else "may"
