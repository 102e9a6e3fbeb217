"""What every long-running `katagate … run` process starts with."""

from __future__ import annotations

import logging
import signal
import threading


def stop_on_signals() -> threading.Event:
    """Log to stderr, and return an event SIGTERM or SIGINT sets (a clean stop, not a kill)."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
