"""The one error a consumer of `schemas` has to catch when reading the log."""

from __future__ import annotations


class SchemaError(ValueError):
    """A record could not be decoded into a current event.

    Raised for invalid JSON, an unknown event type, a version newer than this code knows, a
    missing upcaster, or a payload that fails validation. The message names the type, version
    and failing field, so a dead-letter record says why it is there.
    """
