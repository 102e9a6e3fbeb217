"""Decoding an event record, remembered by its bytes.

Several readers in one process read the same record: the decider's admission, decisions and
apply each read every record of `katagate.mail`, and every reader reads back what its own
process wrote (the scanner its submissions and verdicts, the decider its decisions, deliveries
and the ledgers' mirrors). Decoding is a pure function of the bytes (`decode_event`), and the
events are frozen, so one decoding serves them all: the first reader decodes, the others get the
same event. What a producer writes is remembered with the event it encodes, so reading it back
decodes nothing (the encoding round-trips exactly: tests/unit/test_schemas.py).

Bounded: the newest CAPACITY records (a few seconds of mail at full speed; a reader further
behind decodes for itself). A process that never reads through here (ingest) remembers
nothing of what it writes.
"""

from __future__ import annotations

import contextlib

from katagate.schemas import Event, decode_event

CAPACITY = 2048

_events: dict[bytes, Event] = {}
_reading = False


def decoded(value: bytes) -> Event:
    """`decode_event(value)`, decoded once while it is remembered. Raises SchemaError (a refused
    value is never remembered: each reader names the error itself)."""
    global _reading
    event = _events.get(value)
    if event is None:
        _reading = True
        event = decode_event(value)
        _keep(value, event)
    return event


def remember(value: bytes | None, event: Event | None) -> None:
    """A record this process wrote: `value` is `encode_event(event)`."""
    if _reading and value is not None and event is not None:
        _keep(value, event)


def _keep(value: bytes, event: Event) -> None:
    if len(_events) >= CAPACITY:
        # The oldest goes. Threads share the dict: another may have taken it first.
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):
            del _events[next(iter(_events))]
    _events[value] = event

