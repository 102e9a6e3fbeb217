"""The one way to build a Kafka client. Every producer, consumer and admin client of katagate
comes from here, with katagate's own settings for that client first, then the user's librdkafka
properties (eventlog/client_properties.py) over them: TLS, SASL, anything the cluster needs.

Consumers that never join a group (readers that `assign()`) still carry a group id: librdkafka
asks its coordinator, and a least-privilege cluster only lets a principal near its own groups.
So their ids are `P.<principal>.<role>-<random>`, inside the principal's grant.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from katagate.eventlog.client_properties import (
    KafkaConfigError,
    properties_file,
    read_properties,
    redacted,
)
from katagate.eventlog.kafka_log import RELAY
from katagate.eventlog.settings import KafkaSettings

log = logging.getLogger(__name__)


def user_properties(settings: KafkaSettings) -> dict[str, str]:
    """The user's file for this process's principal, read and checked (empty without one)."""
    path = properties_file(settings.config_file, settings.config_dir, settings.principal)
    return {} if path is None else read_properties(path)


def client_config(settings: KafkaSettings, own: Mapping[str, Any]) -> dict[str, Any]:
    """katagate's settings for one client, then the user's properties over them."""
    return {"bootstrap.servers": settings.bootstrap_servers, **own, **user_properties(settings)}


def relayed(config: dict[str, Any]) -> dict[str, Any]:
    """A producer's or consumer's configuration with librdkafka's log lines, info and up
    (`log_level` 6 unless set), through the `katagate.kafka` logger (eventlog/kafka_log.py);
    the client's poll() serves them."""
    return {"log_level": 6, **config, "logger": RELAY}


def _built(kind: type[Any], config: dict[str, Any]) -> Any:
    try:
        return kind(config)
    except (KafkaException, ValueError, TypeError) as exc:
        # librdkafka names the property: 'Invalid value "x" for configuration property "y"'.
        message = exc.args[0].str() if isinstance(exc, KafkaException) else str(exc)
        raise KafkaConfigError(f"Kafka client configuration: {message}") from None


def new_producer(settings: KafkaSettings, own: Mapping[str, Any]) -> Producer:
    producer: Producer = _built(Producer, relayed(client_config(settings, own)))
    return producer


def new_consumer(settings: KafkaSettings, own: Mapping[str, Any]) -> Consumer:
    consumer: Consumer = _built(Consumer, relayed(client_config(settings, own)))
    return consumer


ADMIN_LOG_POLL_S = 1.0


def new_admin(settings: KafkaSettings, own: Mapping[str, Any] | None = None) -> AdminClient:
    """An admin client whose librdkafka lines go through `katagate.kafka` like the others'.
    They are served only by poll(), which admin calls never make, so a daemon thread polls
    while the client lives (it holds the client weakly: the client's owner decides its life)."""
    admin: AdminClient = _built(AdminClient, relayed(client_config(settings, own or {})))
    threading.Thread(target=_serve_admin_log, args=(weakref.ref(admin),),
                     name="kafka-admin-log", daemon=True).start()
    return admin


def _serve_admin_log(client: weakref.ref[AdminClient]) -> None:
    while (admin := client()) is not None:
        admin.poll(0)
        del admin
        threading.Event().wait(ADMIN_LOG_POLL_S)


def reader_group(settings: KafkaSettings, role: str) -> str:
    """A fresh group id for a consumer that only assigns, inside its principal's grant."""
    return f"{settings.topic_prefix}.{settings.principal or 'katagate'}.{role}-{uuid.uuid4().hex}"


def reader_config(settings: KafkaSettings, role: str, **own: Any) -> dict[str, Any]:
    """katagate's settings for a reader that assigns partitions itself and never commits."""
    return {"group.id": reader_group(settings, role), "client.id": f"katagate-{role}",
            "enable.auto.commit": False, "isolation.level": "read_committed", **own}


def new_reader(settings: KafkaSettings, role: str, **own: Any) -> Consumer:
    return new_consumer(settings, reader_config(settings, role, **own))


def shown_config(settings: KafkaSettings, own: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What `katagate config show` prints: the merged configuration, secrets redacted."""
    return redacted(client_config(settings, own or {}))
