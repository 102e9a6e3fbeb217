"""The console's shared state on disk: one SQLite file in the state folder (`console.sqlite3`,
mode 0600) holding the sessions and the failed sign-ins, so every console process over that
folder, and the `katagate console` commands, see the same ones. One connection per use
(threads and processes share the file, not a connection); BEGIN IMMEDIATE takes the write lock
at once, so a read-then-write is atomic across processes."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

STATE_DB = "console.sqlite3"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS sessions (key TEXT PRIMARY KEY, user TEXT NOT NULL, "
    "csrf_token TEXT NOT NULL, created REAL NOT NULL, seen REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failures (key TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS failures_by_key ON failures (key, at)",
)


class StateDb:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created 0600 before SQLite opens it (its journal files take the same mode).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if not self._ready:
                    for statement in SCHEMA:
                        db.execute(statement)
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        self._ready = True
