"""`katagate kata-emulator ...`: the KATA Central Node emulator's commands."""

from katagate.kata_emulator.cli import register

__all__ = ["register"]
