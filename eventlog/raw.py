"""Raw RFC 5322 bytes in Kafka: chunks of at most 1 MiB, written in the same transaction as the
event that points at them, read back by their offsets.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from eventlog.errors import KatagateError
from eventlog.records import Outgoing
from eventlog.settings import KafkaSettings

CHUNK_BYTES = 1024 * 1024
H_MESSAGE_ID = "katagate-message-id"
H_CHUNK = "katagate-chunk"  # "index/count"


class RawUnavailable(KatagateError):
    """The chunks a location names are gone (retention) or do not match."""


@dataclass(frozen=True)
class Chunked:
    records: list[Outgoing]
    sha256: str
    size: int


def chunk(topic: str, message_id: str, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> Chunked:
    count = max(1, -(-len(data) // chunk_bytes))
    records = [
        Outgoing(
            topic=topic,
            key=message_id.encode(),
            value=data[i * chunk_bytes:(i + 1) * chunk_bytes],
            headers=((H_MESSAGE_ID, message_id.encode()), (H_CHUNK, f"{i}/{count}".encode())),
        )
        for i in range(count)
    ]
    return Chunked(records, hashlib.sha256(data).hexdigest(), len(data))


class RawReader:
    """Reads chunks back by (topic, partition, offsets); one consumer, assigned per read."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._timeout = settings.request_timeout_s
        self._consumer = Consumer({
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "katagate-raw-reader",  # assign() only: never joins or commits
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            # Offsets removed by retention must be an error here, not a silent jump.
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            "fetch.max.bytes": 8 * CHUNK_BYTES,
            "max.partition.fetch.bytes": 4 * CHUNK_BYTES,
            # A reader wants a few chunks, not librdkafka's default 64 MB of prefetch: stages
            # run a reader per concurrent submission or delivery.
            "queued.max.messages.kbytes": 8 * CHUNK_BYTES // 1024,
            # Reads are by offset, of records that exist: never wait for more to arrive.
            "fetch.wait.max.ms": 5,
            "log_level": 3,
        })

    def read(
        self, topic: str, partition: int, offsets: list[int], message_id: str,
        sha256: str | None = None,
    ) -> bytes:
        """The message's bytes, from its first chunk's offset to its last (other messages'
        records in between are skipped)."""
        wanted = set(offsets)
        found: dict[int, bytes] = {}
        last = max(offsets)
        self._consumer.assign([TopicPartition(topic, partition, min(offsets))])
        try:
            deadline = time.monotonic() + self._timeout
            while not wanted <= found.keys() and time.monotonic() < deadline:
                message = self._consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() in (KafkaError._PARTITION_EOF, KafkaError._AUTO_OFFSET_RESET):
                        break  # the end, or the offsets were deleted by retention
                    continue
                offset = message.offset() or 0
                if offset in wanted and message.key() == message_id.encode():
                    found[offset] = message.value() or b""
                if offset >= last:
                    break
        finally:
            self._consumer.unassign()
        missing = wanted - found.keys()
        if missing:
            raise RawUnavailable(
                f"message {message_id}: chunks at {topic}[{partition}] offsets "
                f"{sorted(missing)[:5]} are unavailable"
            )
        data = b"".join(found[o] for o in offsets)
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise RawUnavailable(f"message {message_id}: raw bytes do not match their sha256")
        return data

    def close(self) -> None:
        self._consumer.close()
