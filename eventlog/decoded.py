"""Decoding an event record once per process, remembered by its bytes.

The decider's three readers (admission, decisions, apply) each read every record of
`katagate.mail`, within seconds of one another (apply takes 600 records a batch, and lags
the others under load). Decoding is a pure function of the bytes
(`decode_event`) and events are frozen, so one decoding serves all three: the first reader
decodes, the others get the same event.

Bounded by count and by bytes: at most CAPACITY records (about 7 s of mail at 160 messages/s;
a reader further behind decodes for itself) and MAX_BYTES of their values, and a value larger
than MAX_VALUE_BYTES (a message with hundreds of recipients) is not kept, so a sender cannot
make it large. A value's decoded event takes a few times its bytes. 2,048 records and 2 MiB
were too few: the readers decoded the same records again, and the decider's CPU per message
fell 7 % with these bounds (the broker budget, alternated: 2.19, 2.26 ms against 2.42, 2.41).

The decider's own writes are remembered as they are encoded (`remember`): its parts read back
what the others wrote (admission's ledger mirrors, decisions' actions, apply's outcomes), and
the event that was encoded equals the event its bytes decode to (the schemas' round trip,
which tests/unit/test_schemas_round_trip.py keeps lossless: no floats, serializers, excluded
or computed fields in any event).

The oldest is dropped from an OrderedDict: dropping a plain dict's first key scans the slots
its earlier drops emptied, about 6 µs an insert at these bounds against 0.2.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from katagate.schemas import Event, decode_event

CAPACITY = 8192
MAX_BYTES = 8 * 1024 * 1024
MAX_VALUE_BYTES = 8 * 1024

_events: OrderedDict[bytes, Event] = OrderedDict()
_bytes = 0
# The readers are threads of one process. A lookup takes no lock: it is one C call on a bytes
# key, atomic under the GIL, and every entry's event equals its key's decoding, so a race costs
# at most a decoding more (a free-threaded interpreter would need this looked at again).
_lock = threading.Lock()


def decoded(value: bytes) -> Event:
    """`decode_event(value)`, decoded once while it is remembered. Raises SchemaError (a refused
    value is never remembered: each reader names the error itself)."""
    event = _events.get(value)
    if event is None:
        event = decode_event(value)
        if len(value) <= MAX_VALUE_BYTES:
            _keep(value, event)
    return event


def remember(value: bytes | None, event: Event) -> None:
    """A record this process writes: `value` is `encode_event(event)`, so a reader here gets
    `event` for it, equal to what decoding gives (an encoded event decodes equal to itself).
    An empty value is never kept: a reader looks a null record up as b"" and must be refused."""
    if value and len(value) <= MAX_VALUE_BYTES:
        _keep(value, event)


def _keep(value: bytes, event: Event) -> None:
    global _bytes
    with _lock:
        if value in _events:  # decoded or remembered meanwhile
            return
        while _events and (len(_events) >= CAPACITY or _bytes + len(value) > MAX_BYTES):
            oldest, _ = _events.popitem(last=False)
            _bytes -= len(oldest)
        _events[value] = event
        _bytes += len(value)
