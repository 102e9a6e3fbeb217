"""RawReader on the real broker: one message or many at once, by their chunks' offsets."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from katagate.eventlog.clients import new_reader
from katagate.eventlog.producer import TransactionalProducer
from katagate.eventlog.raw import (
    CHUNK_BYTES,
    MAX_SKIP,
    READ_AHEAD_BYTES,
    RawReader,
    RawUnavailable,
    RawWant,
    chunk,
)
from katagate.eventlog.read_to_end import watermarks
from katagate.eventlog.records import Outgoing
from katagate.eventlog.topics import TopicNames
from tests.integration.kata_harness import wait_for

pytestmark = pytest.mark.kafka


def write(settings, records: list[Outgoing]) -> list[tuple[int, int]]:
    producer = TransactionalProducer(settings, f"test-raw-{uuid.uuid4().hex[:8]}")
    producer.begin()
    located = producer.produce_located(records)
    producer.commit()
    producer.close()
    # A commit returns before the markers are written: until then a read_committed reader
    # meets the partition's end first (as the stages never do: they read what they consumed).
    probe = new_reader(settings, "test-visible")
    try:
        for partition in {p for p, _o in located}:
            last = max(o for p, o in located if p == partition)
            wait_for(lambda p=partition, last=last: watermarks(
                probe, (records[0].topic, p), 30.0)[1] > last, 30, "the commit to be visible")
    finally:
        probe.close()
    return located


def want_for(topic: str, message_id: str, data: bytes, located) -> RawWant:
    (partition,) = {p for p, _o in located}
    return RawWant(topic, partition, [o for _p, o in located], message_id,
                   hashlib.sha256(data).hexdigest())


@pytest.fixture
def reader(kafka_settings):
    reader = RawReader(kafka_settings)
    yield reader
    reader.close()


def test_many_messages_written_together_are_read_back_exactly(kafka_settings, reader):
    topic = TopicNames(kafka_settings.topic_prefix).raw
    messages = {f"m-{i}-{uuid.uuid4().hex[:6]}": bytes([65 + i]) * (700 + 97 * i)
                for i in range(40)}
    chunked = [chunk(topic, message_id, data, chunk_bytes=256)  # several chunks each
               for message_id, data in messages.items()]
    located = write(kafka_settings, [r for c in chunked for r in c.records])
    wants, start = [], 0
    for (message_id, data), c in zip(messages.items(), chunked, strict=True):
        wants.append(want_for(topic, message_id, data, located[start:start + len(c.records)]))
        start += len(c.records)

    assert reader.read_many(wants) == messages
    assert reader.read(wants[7].topic, wants[7].partition, wants[7].offsets,
                       wants[7].message_id, wants[7].sha256) == messages[wants[7].message_id]


def test_chunks_far_apart_are_read_by_seeking_and_what_lies_between_is_skipped(
    kafka_settings, reader
):
    topic = TopicNames(kafka_settings.topic_prefix).raw
    message_id = f"far-{uuid.uuid4().hex[:6]}"
    data = b"first half|" + b"second half"
    first, second = data[:11], data[11:]
    filler = [Outgoing(topic, b"not this", message_id.encode()) for _ in range(MAX_SKIP + 50)]
    located = write(kafka_settings, [Outgoing(topic, first, message_id.encode()), *filler,
                                     Outgoing(topic, second, message_id.encode())])
    want = want_for(topic, message_id, data, [located[0], located[-1]])
    assert want.offsets[1] - want.offsets[0] > MAX_SKIP
    assert reader.read_many([want]) == {message_id: data}


def test_each_bad_location_fails_alone_and_the_others_are_read(kafka_settings, reader):
    topic = TopicNames(kafka_settings.topic_prefix).raw
    good_id, tampered_id, other_key_id = (f"{name}-{uuid.uuid4().hex[:6]}"
                                          for name in ("good", "tampered", "elsewhere"))
    good = want_for(topic, good_id, b"good bytes",
                    write(kafka_settings, chunk(topic, good_id, b"good bytes").records))
    tampered = RawWant(good.topic, good.partition, good.offsets, tampered_id, good.sha256)
    wrong_sha = RawWant(good.topic, good.partition, good.offsets, good_id, "0" * 64)
    beyond = RawWant(good.topic, good.partition, [good.offsets[0] + 10_000], other_key_id)

    results = reader.read_many([good, tampered, beyond])
    assert results[good_id] == b"good bytes"
    assert isinstance(results[tampered_id], RawUnavailable)  # the records hold another message
    assert isinstance(results[other_key_id], RawUnavailable)  # no such offset yet
    with pytest.raises(RawUnavailable, match="sha256"):
        reader.read(wrong_sha.topic, wrong_sha.partition, wrong_sha.offsets, good_id,
                    wrong_sha.sha256)


def test_a_message_larger_than_a_fetch_is_read_whole(kafka_settings, reader):
    """The reader's fetches are small (READ_AHEAD_BYTES a partition, a chunk in all): a message
    of several chunks takes several, and a chunk larger than a partition's limit still comes
    whole."""
    topic = TopicNames(kafka_settings.topic_prefix).raw
    message_id = f"big-{uuid.uuid4().hex[:6]}"
    size = READ_AHEAD_BYTES + 4096  # each chunk over a partition's limit
    data = bytes(range(256)) * (3 * size // 256) + b"tail"  # 3 chunks and a bit
    chunked = chunk(topic, message_id, data, chunk_bytes=size)
    assert READ_AHEAD_BYTES < size <= CHUNK_BYTES
    located = write(kafka_settings, [*chunked.records,
                                     Outgoing(topic, b"later", message_id.encode())])
    assert reader.read_many([want_for(topic, message_id, data,
                                      located[:len(chunked.records)])]) == {message_id: data}


def test_the_records_after_a_message_are_not_taken_from_the_consumer(
    kafka_settings, reader, monkeypatch
):
    """A read builds only the records of its span: those fetched after it are dropped by
    librdkafka at the unassign, never made into messages and thrown away here."""
    topic = TopicNames(kafka_settings.topic_prefix).raw
    message_id = f"small-{uuid.uuid4().hex[:6]}"
    data = b"0123456789" * 300
    chunked = chunk(topic, message_id, data, chunk_bytes=256)  # 12 chunks
    # In the message's partition (its key), fetched with it.
    after = [Outgoing(topic, b"x" * 100, message_id.encode()) for _ in range(300)]
    located = write(kafka_settings, [*chunked.records, *after])
    want = want_for(topic, message_id, data, located[:len(chunked.records)])
    counting = Counting(reader._consumer)
    monkeypatch.setattr(reader, "_consumer", counting)
    assert reader.read_many([want]) == {message_id: data}
    assert counting.records <= len(chunked.records)


class Counting:
    """A consumer that counts the records its consume() hands over."""

    def __init__(self, consumer) -> None:
        self._consumer = consumer
        self.records = 0

    def consume(self, num_messages: int, timeout: float) -> list:
        batch = self._consumer.consume(num_messages, timeout)
        self.records += len(batch)
        return batch

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)
