"""Several durable writers behind one `submit`, and what an SMTP session hands its message to."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Protocol

from katagate.ingest.received import Accepted
from katagate.ingest.write_state import Outcome
from katagate.ingest.writer import DurableWriter


class Writer(Protocol):
    """What an SMTP session hands its accepted message to."""

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        ...


class WriterPool:
    """Several writers, each its own producer and threads. A message goes to the one with the
    fewest waiting."""

    def __init__(self, writers: list[DurableWriter]) -> None:
        if not writers:
            raise ValueError("a pool needs at least one writer")
        self._writers = writers
        self.ready = threading.Event()  # every writer has its producer

    def start(self) -> None:
        for writer in self._writers:
            writer.start()
        threading.Thread(target=self._watch_ready, name="ingest-writers-ready",
                         daemon=True).start()

    def _watch_ready(self) -> None:
        for writer in self._writers:
            writer.ready.wait()
        self.ready.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        for writer in self._writers:
            writer.stop(timeout_s)

    def submit(self, accepted: Accepted, bound_s: float) -> concurrent.futures.Future[Outcome]:
        writer = min(self._writers, key=lambda w: w.waiting)
        return writer.submit(accepted, bound_s)

    @property
    def written(self) -> int:
        return sum(w.written for w in self._writers)
