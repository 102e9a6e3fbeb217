"""The emulator's one exception root: a message fit to show the operator."""

from __future__ import annotations

from katagate.schemas.errors import KatagateError


class EmulatorError(KatagateError):
    """Something the operator can fix (a bad state folder, an unknown sensor, a bad rules file)."""
