"""Raw RFC 5322 bytes in Kafka: chunks of at most 1 MiB, written before the event that points at
them (in its transaction, or, at ingest, acknowledged before the event is written), read back by
their offsets.

`katagate.mail.raw` keys every chunk by its message id (time retention removes them). The Backup
(`katagate.backup`) is compacted instead: each chunk has a key of its own, `<message_id>/<index>`,
in the message's partition, so compaction never drops a live chunk, and a tombstone per chunk key
(`tombstones`) is what removes a copy.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

from confluent_kafka import KafkaError, TopicPartition

from katagate.eventlog.clients import new_consumer, reader_config
from katagate.eventlog.errors import KatagateError
from katagate.eventlog.records import Outgoing
from katagate.eventlog.settings import KafkaSettings

CHUNK_BYTES = 1024 * 1024
H_MESSAGE_ID = "katagate-message-id"
H_CHUNK = "katagate-chunk"  # "index/count"


class RawUnavailable(KatagateError):
    """The chunks a location names are gone (retention) or do not match."""


class Chunks(Sequence[Outgoing]):
    """One message's chunk records, each sliced only when asked for: produced one by one, a
    chunk's copy lives only until librdkafka has copied it, so a 200 MB message is not held a
    third time as slices for the whole transaction."""

    def __init__(self, topic: str, message_id: str, data: bytes, chunk_bytes: int,
                 partition: int | None = None, head: bytes = b"") -> None:
        self._topic, self._key, self._data, self._bytes = (
            topic, message_id.encode(), data, chunk_bytes)
        # The message is head + data, never joined: a small head (ingest's Received field)
        # in front of a large body costs no copy of the body.
        self._head = head
        self._count = max(1, -(-(len(head) + len(data)) // chunk_bytes))
        # Set: a Backup copy, each chunk keyed on its own in this partition (see the module).
        self._partition = partition

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Outgoing: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Outgoing]: ...
    def __getitem__(self, index: int | slice) -> Outgoing | Sequence[Outgoing]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        i = index % self._count
        return Outgoing(
            topic=self._topic,
            key=self._key if self._partition is None else chunk_key(self._key.decode(), i),
            value=self._slice(i * self._bytes, (i + 1) * self._bytes),
            headers=((H_MESSAGE_ID, self._key), (H_CHUNK, f"{i}/{self._count}".encode())),
            partition=self._partition,
        )

    def _slice(self, start: int, end: int) -> bytes:
        h = len(self._head)
        if start >= h:
            return self._data[start - h:end - h]
        return self._head[start:end] + self._data[:max(0, end - h)]


@dataclass(frozen=True)
class Chunked:
    records: Chunks
    sha256: str
    size: int


def chunk(topic: str, message_id: str, data: bytes, chunk_bytes: int = CHUNK_BYTES,
          head: bytes = b"") -> Chunked:
    """Raw chunks of `head + data`, keyed by the message id (`katagate.mail.raw`)."""
    digest = hashlib.sha256(head)
    digest.update(data)
    return Chunked(Chunks(topic, message_id, data, chunk_bytes, head=head),
                   digest.hexdigest(), len(head) + len(data))


def chunk_key(message_id: str, index: int) -> bytes:
    return f"{message_id}/{index}".encode()


def backup_chunks(topic: str, message_id: str, data: bytes, partition: int,
                  chunk_bytes: int = CHUNK_BYTES) -> Chunked:
    """A Backup copy's chunks: each keyed `<message_id>/<index>`, all in `partition` (the
    message's), so a compacted topic keeps every chunk until its own tombstone."""
    return Chunked(Chunks(topic, message_id, data, chunk_bytes, partition),
                   hashlib.sha256(data).hexdigest(), len(data))


def tombstones(topic: str, message_id: str, partition: int, chunk_count: int) -> list[Outgoing]:
    """What removes a Backup copy from the compacted topic: a null value per chunk key."""
    return [Outgoing(topic=topic, key=chunk_key(message_id, i), value=None, partition=partition)
            for i in range(chunk_count)]


@dataclass(frozen=True)
class RawWant:
    """One message's chunks, as an event locates them."""

    topic: str
    partition: int
    offsets: list[int]
    message_id: str
    sha256: str | None = None


# What a stage reads ahead for a batch at most: a large message is read alone, when needed.
PREFETCH_BYTES = 16 * 1024 * 1024

# What a reader's fetch asks of a partition at most (see RawReader).
READ_AHEAD_BYTES = 256 * 1024

# Within a partition, wanted records at most this far apart are read in one pass (the records
# between them are skipped); farther apart, the reader seeks.
MAX_SKIP = 256


class RawReader:
    """Reads chunks back by (topic, partition, offsets); one consumer, assigned per read."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._timeout = settings.request_timeout_s
        self._consumer = new_consumer(settings, {
            **reader_config(settings, "raw-reader"),
            # Offsets removed by retention must be an error here, not a silent jump.
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            # A read wants a span of records and everything fetched past it is dropped at the
            # unassign, so each fetch is kept small: a stage reading a topic written ahead of
            # it fetched 16 times the bytes it wanted with 4 MiB per partition. A chunk larger
            # than these limits is still returned whole (a fetch always makes progress).
            # fetch.max.bytes is left to librdkafka: it follows the queue's limit, and never
            # falls under message.max.bytes, which a site's properties may raise.
            "max.partition.fetch.bytes": READ_AHEAD_BYTES,
            "queued.max.messages.kbytes": CHUNK_BYTES // 1024,
            # Over that, librdkafka waits this long before the next fetch (1 s by default): a
            # span longer than one fetch would wait it out at each.
            "fetch.queue.backoff.ms": 5,
            # Reads are by offset, of records that exist: never wait for more to arrive.
            "fetch.wait.max.ms": 5,
        })

    def read(
        self, topic: str, partition: int, offsets: list[int], message_id: str,
        sha256: str | None = None,
    ) -> bytes:
        """The message's bytes, from its first chunk's offset to its last (other messages'
        records in between are skipped)."""
        result = self.read_many([RawWant(topic, partition, offsets, message_id, sha256)])
        data = result[message_id]
        if isinstance(data, RawUnavailable):
            raise data
        return data

    def read_many(self, wants: list[RawWant]) -> dict[str, bytes | RawUnavailable]:
        """Several messages' bytes, by message id, in as few fetches as their offsets allow:
        messages received together lie together in their partition, and one fetch returns many
        of them where one read per message costs a fetch (and a broker request) each. The
        caller bounds how many bytes it asks for at once."""
        found: dict[tuple[str, int, int], bytes] = {}
        keys: dict[tuple[str, int, int], bytes] = {}
        by_partition: dict[tuple[str, int], set[int]] = {}
        for want in wants:
            by_partition.setdefault((want.topic, want.partition), set()).update(want.offsets)
        for (topic, partition), offsets in by_partition.items():
            for first, last in _spans(sorted(offsets)):
                self._scan(topic, partition, first, last, offsets, found, keys)
        results: dict[str, bytes | RawUnavailable] = {}
        for want in wants:
            places = [(want.topic, want.partition, o) for o in want.offsets]
            # A raw chunk is keyed by its message id, a Backup chunk by `<id>/<index>`.
            missing = [p[2] for i, p in enumerate(places)
                       if p not in found or keys[p] not in (want.message_id.encode(),
                                                             chunk_key(want.message_id, i))]
            if missing:
                results[want.message_id] = RawUnavailable(
                    f"message {want.message_id}: chunks at {want.topic}[{want.partition}] "
                    f"offsets {missing[:5]} are unavailable")
                continue
            data = b"".join(found[p] for p in places)
            if want.sha256 is not None and hashlib.sha256(data).hexdigest() != want.sha256:
                results[want.message_id] = RawUnavailable(
                    f"message {want.message_id}: raw bytes do not match their sha256")
                continue
            results[want.message_id] = data
        return results

    def _scan(self, topic: str, partition: int, first: int, last: int, wanted: set[int],
              found: dict[tuple[str, int, int], bytes],
              keys: dict[tuple[str, int, int], bytes]) -> None:
        self._consumer.assign([TopicPartition(topic, partition, first)])
        try:
            deadline = time.monotonic() + self._timeout
            position = first
            while time.monotonic() < deadline:
                # What is fetched already, else wait for one: consume(n, timeout) would wait
                # out the whole timeout for n records. Never more than the span still wants:
                # the records after it would only be built and dropped.
                batch = self._consumer.consume(max(1, min(500, last - position + 1)), 0)
                if not batch:
                    waited = self._consumer.poll(0.2)
                    batch = [waited] if waited is not None else []
                done = False
                for message in batch:
                    error = message.error()
                    if error is not None:
                        if error.code() in (KafkaError._PARTITION_EOF,
                                            KafkaError._AUTO_OFFSET_RESET):
                            done = True  # the end, or the offsets were deleted by retention
                        continue
                    offset = message.offset() or 0
                    position = offset + 1
                    if offset in wanted and message.value() is not None:  # not a tombstone
                        found[(topic, partition, offset)] = message.value() or b""
                        keys[(topic, partition, offset)] = message.key() or b""
                    if offset >= last:
                        done = True
                if done:
                    return
        finally:
            self._consumer.unassign()

    def close(self) -> None:
        self._consumer.close()


def _spans(offsets: list[int]) -> list[tuple[int, int]]:
    """Sorted offsets cut into (first, last) runs with gaps of at most MAX_SKIP."""
    spans: list[tuple[int, int]] = []
    for offset in offsets:
        if spans and offset - spans[-1][1] <= MAX_SKIP:
            spans[-1] = (spans[-1][0], offset)
        else:
            spans.append((offset, offset))
    return spans


class RawReaders:
    """One `RawReader` per thread (a consumer is not shared between threads), all closed
    together: for stages that read raw messages from a pool of worker threads."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._local = threading.local()
        self._all: list[RawReader] = []
        self._lock = threading.Lock()

    def mine(self) -> RawReader:
        """The calling thread's reader, created on its first use."""
        reader: RawReader | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = RawReader(self._settings)
            with self._lock:
                self._all.append(reader)
        return reader

    def close(self) -> None:
        with self._lock:
            readers, self._all = self._all, []
        for reader in readers:
            reader.close()


def prefetch(reader: RawReader, wants: list[tuple[RawWant, int]],
             budget: int = PREFETCH_BYTES) -> dict[str, bytes | RawUnavailable]:
    """Of (want, size) pairs, read at once those that fit together in `budget` bytes, in the
    order given; the others are left out, for their user to read alone."""
    chosen: list[RawWant] = []
    total = 0
    for want, size in wants:
        if total + size <= budget:
            chosen.append(want)
            total += size
    return reader.read_many(chosen) if chosen else {}
