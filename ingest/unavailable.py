"""Whether KATA can take a message now, for rules whose `on_unavailable` is tempfail: the SMTP
client is told `451 4.7.0` and keeps the message, so nothing is accepted that cannot be scanned.
Pure: the configuration in force and the quarantine's usage come in.

The usage is the newest the admission recorded (`katagate.quarantine.usage`, followed by
ingest/control.py's `QuarantineUsage`; never the ledger topic, which holds what ingest must not
read): admission is the one writer that knows it exactly, so this is a close reading, not a
reservation. No record yet (a fresh gateway) reads as an empty quarantine. A message accepted
on a stale reading is kept by admission as under `hold` (decider/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from katagate.ingest import replies
from katagate.ingest.replies import Reply
from katagate.schemas import ControlState, Event, QuarantineUsageRecorded, Rule, on_unavailable_of

# The product never scans a message over 200 MB (decider/ledger.py's MAX_MESSAGE_BYTES).
MAX_SCAN_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Usage:
    bytes_in_use: int = 0
    messages_in_use: int = 0
    known: bool = False  # no usage record read yet: never called full


def evolve_usage(usage: Usage, event: Event) -> Usage:
    if isinstance(event, QuarantineUsageRecorded):
        return Usage(event.bytes_in_use, event.messages_in_use, known=True)
    return usage


def quarantine_full(usage: Usage, state: ControlState, size: int) -> bool:
    """Whether a message of `size` octets (0 at RCPT: not known yet) would go over a limit."""
    limits = state.settings
    return usage.known and (usage.messages_in_use + 1 > limits.quarantine_max_messages
                            or usage.bytes_in_use + max(size, 1) > limits.quarantine_max_bytes)


def tempfail(state: ControlState, rule: Rule, usage: Usage, size: int = 0) -> Reply | None:
    """The refusal for a message under `rule` that KATA cannot take now, if its rule (or the
    global setting) says tempfail. KATA protection switched off, globally or for the rule, is a
    choice: such mail is delivered unscanned, never refused."""
    if not state.protection_enabled or not rule.kata.enabled:
        return None
    if on_unavailable_of(state, rule) != "tempfail":
        return None
    if state.connection != "connected":
        return replies.KATA_NOT_CONNECTED
    if size > MAX_SCAN_BYTES:
        # No retry could ever be scanned: refused for good, the sender's MTA tells its sender.
        return replies.OVER_SCAN_LIMIT
    if quarantine_full(usage, state, size):
        return replies.KATA_QUARANTINE_FULL
    return None

