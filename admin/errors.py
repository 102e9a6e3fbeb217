"""The one refusal every admin command raises: nothing was written, and the message says why."""


class InvalidCommand(ValueError):
    """A command that changes nothing; the message names the field and what it accepts."""
