"""Event ids derived from (message, step): a step redone after a crash or a redelivery writes
the event with the same id, and readers drop the duplicate.

Each stage keeps the namespace it has always used: ids already in the log must come out the
same, or a redone step after an upgrade would write a second event.
"""

from __future__ import annotations

import uuid

# One namespace per deriving part, as first published.
LEDGER = uuid.UUID("9a4e2b1c-7d3f-4e5a-8b6c-0d1e2f3a4b5c")  # admission: the quarantine ledger
DECISIONS = uuid.UUID("3f0c9a52-61d4-4c1e-b7a4-2c6e8d1f5b90")  # decisions
EFFECTS = uuid.UUID("5b2e8c71-0a9d-4f36-9e12-7c4d3b6a8f05")  # apply: one id per effect
SCANS = uuid.UUID("0d6c7d2e-9b7e-4f43-8f0e-5c1a3b2d9e71")  # the scanner's book


def step_id(namespace: uuid.UUID, message_id: str, step: str) -> uuid.UUID:
    return uuid.uuid5(namespace, f"{message_id}:{step}")
