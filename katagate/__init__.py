"""katagate: the entry point that wires the stages; each stage lives in its own package."""

__version__ = "0.1.0"
