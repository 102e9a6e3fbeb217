"""Browser sessions, kept server-side in SQLite in the console's state folder (`console.sqlite3`,
console/state_db.py), so they survive a restart, are shared by every console process over the
same folder, and `katagate console password` can end them from the command line. The
session id travels in an HttpOnly, SameSite=Strict cookie and is stored by its SHA-256 only;
each session has its synchronizer CSRF token, which the pages send back in a header on every
state-changing request. Ids and the time (seconds since the epoch) come in.

Server-side rather than signed cookies: a signed cookie cannot be revoked one by one (sign
out, a password reset) without a shared deny list, which is server-side state again."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from katagate.console.state_db import StateDb

COOKIE = "katagate_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Session:
    user: str
    csrf_token: str
    created: float
    seen: float


def _key(session_id: str) -> str:
    # Stored by digest: a copy of the file or a debug listing does not hand out live cookies.
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class Sessions:
    def __init__(self, db: StateDb, idle_s: float, max_s: float) -> None:
        self._db = db
        self.idle_s = idle_s
        self.max_s = max_s

    def open(self, user: str, session_id: str, csrf_token: str, now: float) -> Session:
        session = Session(user=user, csrf_token=csrf_token, created=now, seen=now)
        with self._db.transaction() as db:
            db.execute("DELETE FROM sessions WHERE seen <= ? OR created <= ?",
                       (now - self.idle_s, now - self.max_s))
            db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (_key(session_id), user, csrf_token, now, now))
        return session

    def get(self, session_id: str, now: float) -> Session | None:
        """The live session with this id (its idle clock restarted), or None."""
        key = _key(session_id)
        with self._db.transaction() as db:
            row = db.execute("SELECT user, csrf_token, created, seen FROM sessions "
                             "WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            session = Session(*row)
            if not self._alive(session, now):
                db.execute("DELETE FROM sessions WHERE key = ?", (key,))
                return None
            db.execute("UPDATE sessions SET seen = ? WHERE key = ?", (now, key))
        return Session(session.user, session.csrf_token, session.created, now)

    def close(self, session_id: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM sessions WHERE key = ?", (_key(session_id),))

    def close_all(self, user: str) -> int:
        """After a password change or reset: every session of that user ends. How many did."""
        with self._db.transaction() as db:
            return db.execute("DELETE FROM sessions WHERE user = ?", (user,)).rowcount

    def _alive(self, session: Session, now: float) -> bool:
        return now - session.seen < self.idle_s and now - session.created < self.max_s


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf_token.encode(),
                                                         presented.encode())
