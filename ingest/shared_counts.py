"""The session counts of ingest's SMTP workers, shared, so that `max_sessions` and
`max_sessions_per_client` cap the stage as they cap one process (anvil's part in Postfix).

A memory map (a memfd the supervisor makes and hands down by file descriptor, as it does the
listeners: no name, gone with the processes) holds a count per client bucket and per worker.
Each worker writes only its own column (one writer a cell, so no lock), and reads the row of
every worker to decide: a count another worker is changing at that instant may be read one
off, as two sessions arriving at once in one process could not be. A client is counted in two
of `BUCKETS` buckets, by a hash keyed at random per supervisor (the map's first bytes), and its
count is the smaller of the two (a count-min sketch): no client can choose to share a bucket
with another, and one that learned, from early refusals, the bucket of another would still
have to fill the other's second bucket too. A shared bucket only refuses early, never admits
more. The last row is the sessions in all.

A worker that dies leaves its column: the supervisor clears it before the worker starts again,
and a worker clears its own as it starts (ingest/workers.py).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import secrets

BUCKETS = 65536
KEY_BYTES = 16
_CELL = 4  # a signed 32-bit count
_ALL = BUCKETS  # the row of the sessions in all


def size(workers: int) -> int:
    return KEY_BYTES + (BUCKETS + 1) * workers * _CELL


def create(workers: int) -> int:
    """The supervisor's: the map's file descriptor, zeroed, its hash key written."""
    fd = os.memfd_create("katagate-ingest-sessions", os.MFD_CLOEXEC)
    os.ftruncate(fd, size(workers))
    os.pwrite(fd, secrets.token_bytes(KEY_BYTES), 0)
    return fd


def workers_of(fd: int) -> int:
    """How many workers the map at `fd` was made for (from its size)."""
    workers, extra = divmod(os.fstat(fd).st_size - KEY_BYTES, (BUCKETS + 1) * _CELL)
    if extra or workers < 1:
        raise ValueError("not a map of ingest's session counts")
    return workers


class SharedCounts:
    """One process's view of the map: `column` is the one it writes (a worker's index)."""

    def __init__(self, fd: int, column: int) -> None:
        workers = workers_of(fd)
        if not 0 <= column < workers:
            raise ValueError(f"column {column} is not one of {workers} workers")
        self._map = mmap.mmap(fd, size(workers))
        self._key = bytes(self._map[:KEY_BYTES])
        self._cells = memoryview(self._map)[KEY_BYTES:].cast("i")
        self.workers = workers
        self.column = column
        self._last: tuple[str, tuple[int, int]] | None = None

    def _buckets(self, client: str) -> tuple[int, int]:
        # A session's admission reads its client's count and then adds to it: the last
        # client's buckets are kept, so each connection hashes once.
        last = self._last
        if last is not None and last[0] == client:
            return last[1]
        digest = hashlib.blake2b(client.encode(), digest_size=8, key=self._key).digest()
        buckets = (int.from_bytes(digest[:4], "little") % BUCKETS,
                   int.from_bytes(digest[4:], "little") % BUCKETS)
        self._last = (client, buckets)
        return buckets

    def _row(self, row: int) -> int:
        start = row * self.workers
        return sum(self._cells[start:start + self.workers])

    def client(self, client: str) -> int:
        """The sessions `client` holds across every worker."""
        return min(self._row(bucket) for bucket in self._buckets(client))

    def total(self) -> int:
        return self._row(_ALL)

    def add(self, client: str | None, delta: int) -> None:
        """This worker's count for `client` (None: in all only) and in all, moved by `delta`."""
        if client is not None:
            self.add_client(client, delta)
        self._cells[_ALL * self.workers + self.column] += delta

    def add_client(self, client: str, delta: int) -> None:
        """`client`'s count alone (a session counted in all already, named later)."""
        for bucket in set(self._buckets(client)):
            self._cells[bucket * self.workers + self.column] += delta

    def clear(self, column: int) -> None:
        """Every count of worker `column` back to 0: it is gone, or starting."""
        for row in range(BUCKETS + 1):
            self._cells[row * self.workers + column] = 0
