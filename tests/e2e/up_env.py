"""The environment the e2e tests run `katagate up` in: the session's broker and a topic
namespace of its own, none of the caller's KATAGATE_* settings, short transactions, and the
audit key in the test's folder."""

from __future__ import annotations

import os
from pathlib import Path

from katagate.eventlog.settings import KafkaSettings


def up_env(kafka: KafkaSettings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KATAGATE_")}
    env.update(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
               KATAGATE_TOPIC_PREFIX=kafka.topic_prefix,
               KATAGATE_MAIL_PARTITIONS=str(kafka.mail_partitions),
               KATAGATE_TRANSACTION_TIMEOUT_MS="10000",
               KATAGATE_AUDIT_KEY_DIR=str(tmp_path / "audit-key"), **extra)
    return env
