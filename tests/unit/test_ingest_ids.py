"""Message ids: [A-Za-z0-9]{8,64} (they double as KATA scanIds), time-sortable, unique."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from katagate.ingest.ids import ENTROPY_BYTES, message_id, millis_of
from katagate.schemas.types import MessageId

PATTERN = re.compile(r"^[A-Za-z0-9]{8,64}$")


def test_an_id_is_26_characters_of_crockford_base32():
    mid = message_id(1_700_000_000_000, bytes(range(10)))
    assert len(mid) == 26
    assert PATTERN.match(mid)
    assert not set(mid) & set("ILOU")


def test_the_same_inputs_give_the_same_id_and_the_time_reads_back():
    entropy = os.urandom(ENTROPY_BYTES)
    assert message_id(123456789, entropy) == message_id(123456789, entropy)
    assert millis_of(message_id(123456789, entropy)) == 123456789


@given(st.integers(0, 2**48 - 1), st.integers(0, 2**48 - 1),
       st.binary(min_size=10, max_size=10), st.binary(min_size=10, max_size=10))
def test_ids_sort_by_time(t1, t2, e1, e2):
    a, b = message_id(t1, e1), message_id(t2, e2)
    if t1 < t2:
        assert a < b
    assert PATTERN.match(a)


def test_a_hundred_thousand_ids_in_one_millisecond_are_unique():
    ids = {message_id(1_700_000_000_000, os.urandom(ENTROPY_BYTES)) for _ in range(100_000)}
    assert len(ids) == 100_000


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="48 bits"):
        message_id(2**48, bytes(10))
    with pytest.raises(ValueError, match="10 bytes"):
        message_id(0, bytes(9))


def test_ids_are_valid_message_ids_for_the_schema():
    from pydantic import TypeAdapter

    adapter = TypeAdapter(MessageId)
    assert adapter.validate_python(message_id(0, bytes(10))) == "0" * 26
