"""The console's own settings (the Kafka ones are `eventlog.settings.KafkaSettings`), read from
`KATAGATE_CONSOLE_*` at the entry point only."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from katagate.eventlog.config_file import FileSettings
from katagate.eventlog.health import DEFAULT_STALL_S, StallSeconds
from katagate.eventlog.listen import LOOPBACK, ListenHost, refuse_metrics_on


class ConsoleSettings(FileSettings):
    model_config = SettingsConfigDict(env_prefix="KATAGATE_CONSOLE_", frozen=True,
                                      extra="ignore")
    config_section: ClassVar[str] = "console"

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)  # 0: a free port
    # The admin account, API tokens and a generated first password live here (mode 0700).
    state_dir: Path = Path(".katagate/console")
    admin_name: str = Field(default="admin", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # The first start's password; unset: one is generated and written to the state dir.
    admin_password: SecretStr | None = None
    # Where the live views come from (`katagate projector run`), and the file (mode 0600)
    # holding the projector read token the console sends (`katagate up` makes it); the token
    # itself is never a setting, so it never reaches `ps` or a log.
    projector_url: str = "http://127.0.0.1:8080"
    projector_token_file: Path | None = None
    projector_timeout_s: float = Field(default=5.0, gt=0, le=60)
    session_idle_s: int = Field(default=1800, ge=60, le=86400)
    session_max_s: int = Field(default=12 * 3600, ge=60, le=7 * 86400)
    # HTTPS served by the console itself: a PEM certificate (chain) and its private key, both
    # or neither, checked at start. Over TLS the session cookie is always `Secure`.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Behind a reverse proxy that terminates TLS, set true: the cookie is then `Secure` too.
    cookie_secure: bool = False
    login_failures: int = Field(default=5, ge=1, le=1000)  # per client address and account
    login_window_s: int = Field(default=60, ge=1, le=3600)  # ... in this many seconds
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # How long a read waits for the console's own last write to be folded back.
    read_your_writes_s: float = Field(default=10.0, gt=0, le=120)
    # Prometheus metrics on their own listener, unauthenticated (None: not served).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # Loopback unless told otherwise: 0.0.0.0 in a container, for Prometheus to reach it.
    metrics_host: ListenHost = LOOPBACK
    # /healthz answers 503 when a loop of the stage has not polled for this long (5-3600 s).
    health_stall_s: StallSeconds = DEFAULT_STALL_S

    @model_validator(mode="after")
    def _metrics_apart(self) -> Self:
        refuse_metrics_on("console", self.host, self.port, self.metrics_host, self.metrics_port)
        return self
