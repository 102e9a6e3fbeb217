"""katagate's one exception root, and the one error a consumer of `schemas` has to catch when
reading the log. Every error katagate raises on purpose derives from `KatagateError`: a front
end (the CLI, the console) catches it and shows its message; anything else is a bug."""

from __future__ import annotations


class KatagateError(Exception):
    """Root of every error katagate raises on purpose; its message is fit to show."""


class SchemaError(KatagateError, ValueError):
    """A record could not be decoded into a current event.

    Raised for invalid JSON, an unknown event type, a version newer than this code knows, a
    missing upcaster, or a payload that fails validation. The message names the type, version
    and failing field, so a dead-letter record says why it is there.
    """
