"""The projector's own settings (the Kafka ones are `eventlog.settings.KafkaSettings`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProjectorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_PROJECTOR_", frozen=True,
                                      extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: a free port
    state_dir: Path = Path(".katagate/projector")
    snapshot_interval_s: float = Field(default=5.0, gt=0, le=3600)
    rebuild: bool = False  # ignore the snapshot and read every topic from offset 0
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    poll_timeout_s: float = Field(default=0.1, gt=0, le=5)
