"""A KATA Central Node emulator: the scanner API over mutual TLS, sensors, a console."""
