"""The one refusal every admin command raises: nothing was written, and the message says why.

Front ends that answer machines (the HTTP API) also need the field and what it accepts apart
from the sentence: validators pass them, and a message of the usual `field: ...` form names
its field even when no one did."""

from __future__ import annotations

import re

from katagate.schemas.errors import KatagateError

# `central_node_port: must be ...`, `kata.action: must be ...`: the field a message starts with.
_FIELD = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?): ")


class InvalidCommand(KatagateError, ValueError):
    """A command that changes nothing; the message names the field and what it accepts."""

    def __init__(self, message: str, *, field: str | None = None,
                 allowed: object = None) -> None:
        super().__init__(message)
        if field is None and (match := _FIELD.match(message)) is not None:
            field = match.group(1)
        self.field = field
        self.allowed = allowed  # a description or a list of choices; None: see the message


class NothingToChange(InvalidCommand):
    """The command is valid but what it asks is already in force: no event without a change."""


class NotFound(InvalidCommand):
    """The command names something (a rule) that does not exist."""
