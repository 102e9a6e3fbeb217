"""Raw chunks: sliced lazily, in order, with headers a reader can check."""

from __future__ import annotations

import hashlib

import pytest

from katagate.eventlog.raw import H_CHUNK, H_MESSAGE_ID, backup_chunks, chunk, tombstones


def test_the_chunks_put_back_together_are_the_message() -> None:
    data = bytes(range(256)) * 40  # 10,240 octets
    chunked = chunk("raw", "m1", data, chunk_bytes=1000)
    assert len(chunked.records) == 11
    assert b"".join(r.value for r in chunked.records) == data
    assert [len(r.value) for r in chunked.records] == [1000] * 10 + [240]
    assert chunked.sha256 == hashlib.sha256(data).hexdigest()
    assert chunked.size == len(data)


def test_each_chunk_names_its_message_and_place() -> None:
    chunked = chunk("raw", "m2", b"x" * 25, chunk_bytes=10)
    assert [dict(r.headers)[H_CHUNK] for r in chunked.records] == [b"0/3", b"1/3", b"2/3"]
    assert {dict(r.headers)[H_MESSAGE_ID] for r in chunked.records} == {b"m2"}
    assert {(r.topic, r.key) for r in chunked.records} == {("raw", b"m2")}


def test_an_empty_message_is_one_empty_chunk() -> None:
    records = chunk("raw", "m3", b"").records
    assert len(records) == 1
    assert records[0].value == b""


def test_indexing_and_slicing_behave_as_a_list_would() -> None:
    records = chunk("raw", "m4", b"abcdefghij", chunk_bytes=3).records
    as_list = list(records)
    assert [r.value for r in records[1:3]] == [r.value for r in as_list[1:3]] == [b"def", b"ghi"]
    assert records[-1].value == b"j"
    with pytest.raises(IndexError):
        records[4]
    with pytest.raises(IndexError):
        records[-5]


def test_a_backup_copy_keys_each_chunk_on_its_own_in_the_messages_partition() -> None:
    # Given a Backup copy of three chunks for a message of partition 4
    records = backup_chunks("backup", "m5", b"x" * 25, partition=4, chunk_bytes=10).records
    # Then each chunk has its own key, so compaction never supersedes one by another
    assert [r.key for r in records] == [b"m5/0", b"m5/1", b"m5/2"]
    assert {r.partition for r in records} == {4}
    assert {dict(r.headers)[H_MESSAGE_ID] for r in records} == {b"m5"}
    # And the raw topic's chunks keep the message id as key, placed by the partitioner
    assert {(r.key, r.partition) for r in chunk("raw", "m5", b"x" * 25, 10).records} == {
        (b"m5", None)}


def test_a_removed_copy_gets_one_tombstone_per_chunk_key_in_its_partition() -> None:
    dead = tombstones("backup", "m6", 2, 3)
    assert [(r.topic, r.key, r.value, r.partition) for r in dead] == [
        ("backup", b"m6/0", None, 2), ("backup", b"m6/1", None, 2), ("backup", b"m6/2", None, 2)]


@pytest.mark.parametrize(("head", "chunk_bytes"), [
    (b"", 7), (b"Rcv\r\n", 3), (b"Rcv\r\n", 5), (b"Received: x\r\n", 4), (b"Received: x\r\n", 100),
])
def test_a_head_is_stored_in_front_of_the_data_in_chunks_of_the_usual_size(head, chunk_bytes):
    # Given a head (ingest's Received field) and the client's bytes, kept apart
    data = b"Subject: hi\r\n\r\nbody\r\n"
    # When they are chunked together
    chunked = chunk("raw", "m5", data, chunk_bytes=chunk_bytes, head=head)
    values = [r.value for r in chunked.records]
    # Then the chunks are the slices of head + data, and the digest and size are theirs
    whole = head + data
    assert values == [whole[i:i + chunk_bytes] for i in range(0, len(whole), chunk_bytes)]
    assert chunked.sha256 == hashlib.sha256(whole).hexdigest()
    assert chunked.size == len(whole)
