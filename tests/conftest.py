from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from katagate.eventlog.clients import new_admin
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import ensure_topics
from tests.kafka_cluster import kafka_cluster


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """One real broker for the whole session."""
    with kafka_cluster() as servers:
        yield servers


def ensure_namespace(bootstrap: str, **overrides: object) -> KafkaSettings:
    """Settings for a fresh topic namespace on `bootstrap`, its topics created."""
    values: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "topic_prefix": f"t{uuid.uuid4().hex[:12]}",
        "mail_partitions": 3,
        "transaction_timeout_ms": 10_000,
        "request_timeout_s": 30.0,
        **overrides,
    }
    settings = KafkaSettings(**values)  # type: ignore[arg-type]
    ensure_topics(new_admin(KafkaSettings(bootstrap_servers=bootstrap)), settings)
    return settings


@pytest.fixture
def make_kafka_settings(kafka_bootstrap: str) -> Callable[..., KafkaSettings]:
    """Settings for a fresh topic namespace, its topics created; one namespace per call."""

    def make(**overrides: object) -> KafkaSettings:
        return ensure_namespace(kafka_bootstrap, **overrides)

    return make


@pytest.fixture
def kafka_settings(make_kafka_settings: Callable[..., KafkaSettings]) -> KafkaSettings:
    return make_kafka_settings()
