"""A real secure broker for tests: katagate's own `LocalBroker(secure=True)` (SASL_SSL with
SCRAM-SHA-512 for clients, ACLs enforced, nothing allowed without one), a namespace of topics
made as `admin` and the principals' grants applied to it, as `katagate up --secure` would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from katagate.eventlog import acls
from katagate.eventlog.broker import BrokerStatus, LocalBroker, free_port
from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames, ensure_topics

# Short, so that a refusal the test waits for never costs librdkafka's default 30-60 s.
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SecureKafka:
    """One running secure broker and one namespace on it, topics made and grants applied."""

    folder: Path  # the broker's data folder
    status: BrokerStatus
    prefix: str

    @property
    def bootstrap(self) -> str:
        assert self.status.bootstrap_servers is not None
        return self.status.bootstrap_servers

    @property
    def clients_dir(self) -> Path:
        assert self.status.clients_dir is not None
        return self.status.clients_dir

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.prefix)

    def settings(self, principal: str | None = None, **values: Any) -> KafkaSettings:
        """A stage's settings: its principal's file from the broker's clients folder."""
        fields: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap, "topic_prefix": self.prefix,
            "config_file": None, "config_dir": self.clients_dir, "principal": principal,
            "mail_partitions": 2, "request_timeout_s": REQUEST_TIMEOUT_S,
            "transaction_timeout_ms": 10_000, **values}
        return KafkaSettings(**fields)

    def properties_text(self, principal: str) -> str:
        return (self.clients_dir / f"{principal}.properties").read_text(encoding="utf-8")

    def password(self, principal: str) -> str:
        for line in self.properties_text(principal).splitlines():
            if line.startswith("sasl.password="):
                return line.removeprefix("sasl.password=")
        raise AssertionError(f"{principal}.properties holds no sasl.password")

    def env(self) -> dict[str, str]:
        """A command's environment naming this broker, namespace and clients folder (and none
        of the shell's own Kafka settings)."""
        kept = {key: value for key, value in os.environ.items()
                if not key.startswith(("KATAGATE_", "KAFKA_"))}
        return {**kept, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "KATAGATE_TOPIC_PREFIX": self.prefix,
                "KATAGATE_KAFKA_CONFIG_DIR": str(self.clients_dir),
                "KATAGATE_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S)}


def katagate(*args: str, env: dict[str, str] | None = None,
             timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """The `katagate` command, run as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "katagate", *args],
        capture_output=True, text=True, timeout=timeout_s, check=False, env=env,
    )


@contextmanager
def secure_broker(folder: Path) -> Iterator[tuple[LocalBroker, BrokerStatus]]:
    """A secure broker on a free port, stopped (and its folder removed) at the end."""
    broker = LocalBroker(folder, secure=True)
    try:
        status = broker.start(port=free_port())
        assert status.clients_dir is not None, "a secure broker names its clients folder"
        yield broker, status
    finally:
        broker.stop(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


def prepare_namespace(status: BrokerStatus, folder: Path, prefix: str | None = None
                      ) -> SecureKafka:
    """A fresh namespace: its topics made and every principal's grants applied, as admin."""
    cluster = SecureKafka(folder, status, prefix or f"s{uuid.uuid4().hex[:12]}")
    admin_settings = cluster.settings("admin")
    admin = new_admin(admin_settings)
    ensure_topics(admin, admin_settings)
    change, _foreign = acls.plan(admin, cluster.prefix, REQUEST_TIMEOUT_S)
    acls.apply(admin, change, REQUEST_TIMEOUT_S)
    # The broker's authorizer learns the grants from the metadata log, a moment after the
    # controller took them: the first test must not meet a grant still on its way.
    deadline = time.monotonic() + 30
    while (pending := acls.plan(admin, cluster.prefix, REQUEST_TIMEOUT_S)[0]).create:
        assert time.monotonic() < deadline, f"grants never in force: {pending.create[:3]}"
        time.sleep(0.2)
    return cluster


def private_copy(source: Path, target: Path, *, drop: tuple[str, ...] = (),
                 replace: dict[str, str] | None = None) -> Path:
    """A properties file made from another, some keys dropped or changed, mode 0600."""
    replace = replace or {}
    lines = []
    for line in source.read_text(encoding="utf-8").splitlines():
        key = line.partition("=")[0].strip()
        if key in drop:
            continue
        lines.append(f"{key}={replace.pop(key)}" if key in replace else line)
    lines += [f"{key}={value}" for key, value in replace.items()]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return target


def error_code(exc: BaseException) -> int | None:
    """The Kafka error code an exception carries, itself or as its cause."""
    for each in (exc, exc.__cause__):
        if isinstance(each, KafkaException) and isinstance(each.args[0], KafkaError):
            return int(each.args[0].code())
    return None
