"""The scanner's own settings (the KATA settings themselves are control events)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from katagate.eventlog.config_file import FileSettings
from katagate.eventlog.health import DEFAULT_STALL_S, StallSeconds
from katagate.eventlog.listen import LOOPBACK, ListenHost


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "katagate"


class ScannerSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_SCANNER_", frozen=True, extra="ignore")
    config_section: ClassVar[str] = "scanner"

    # Holds the sensor identity (sensor.key mode 0600, sensor.crt, sensor.id). Instances of one
    # gateway share it: KATA expects one sensorId for a cluster of sensors.
    state_dir: Path = Field(default_factory=_default_state_dir)
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
    # Quick re-checks while a person is expected to act (accepting the sensor) and the base
    # of the backoff after failures; the KATA poll interval bounds both.
    recheck_s: float = Field(default=10.0, gt=0, le=3600)
    request_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Submitted scans still without a verdict: past this, submissions wait (KATA answers 429
    # at its own limit anyway; this keeps us from running into it).
    max_outstanding_scans: int = Field(default=5000, ge=1, le=1_000_000)
    # Submissions in flight at once: each reads the message from Kafka and uploads it, which is
    # waiting, not work; one at a time capped the gateway at about 30 messages/s.
    submit_concurrency: int = Field(default=8, ge=1, le=64)
    # Off, as the product behaves: the Central Node's key is pinned at the first real exchange
    # with it (trust on first use). On: never pinned by the gateway itself; the state window
    # asks an administrator to confirm the fingerprint (`katagate kata pin`).
    require_manual_pin: bool = False

    @property
    def sensor_dir(self) -> Path:
        return self.state_dir / "sensor"
