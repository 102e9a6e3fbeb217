"""Decoding an event record once per process, remembered by its bytes.

The decider's three readers (admission, decisions, apply) each read every record of
`katagate.mail`, within a second or so of one another. Decoding is a pure function of the bytes
(`decode_event`) and events are frozen, so one decoding serves all three: the first reader
decodes, the others get the same event.

Bounded by count and by bytes: at most CAPACITY records (a few seconds of mail at full speed;
a reader further behind decodes for itself) and MAX_BYTES of their values, and a value larger
than MAX_VALUE_BYTES (a message with hundreds of recipients) is not kept, so a sender cannot
make it large. A value's decoded event takes a few times its bytes.
"""

from __future__ import annotations

import threading

from katagate.schemas import Event, decode_event

CAPACITY = 2048
MAX_BYTES = 2 * 1024 * 1024
MAX_VALUE_BYTES = 8 * 1024

_events: dict[bytes, Event] = {}
_bytes = 0
_lock = threading.Lock()  # the readers are threads of one process


def decoded(value: bytes) -> Event:
    """`decode_event(value)`, decoded once while it is remembered. Raises SchemaError (a refused
    value is never remembered: each reader names the error itself)."""
    event = _events.get(value)
    if event is None:
        event = decode_event(value)
        if len(value) <= MAX_VALUE_BYTES:
            _keep(value, event)
    return event


def _keep(value: bytes, event: Event) -> None:
    global _bytes
    with _lock:
        if value in _events:  # another reader decoded it meanwhile
            return
        while _events and (len(_events) >= CAPACITY or _bytes + len(value) > MAX_BYTES):
            oldest = next(iter(_events))
            del _events[oldest]
            _bytes -= len(oldest)
        _events[value] = event
        _bytes += len(value)
