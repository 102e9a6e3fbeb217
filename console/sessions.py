"""Browser sessions, held in memory (a restart signs everyone out): the session id travels in an
HttpOnly, SameSite=Strict cookie; each session has its synchronizer CSRF token, which the pages
send back in a header on every state-changing request. Ids and the time come in."""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, replace

COOKIE = "katagate_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Session:
    user: str
    csrf_token: str
    created: float
    seen: float


def _key(session_id: str) -> str:
    # Stored by digest: a memory dump or a debug listing does not hand out live cookies.
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class Sessions:
    def __init__(self, idle_s: float, max_s: float) -> None:
        self.idle_s = idle_s
        self.max_s = max_s
        self._held: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, user: str, session_id: str, csrf_token: str, now: float) -> Session:
        session = Session(user=user, csrf_token=csrf_token, created=now, seen=now)
        with self._lock:
            self._expire(now)
            self._held[_key(session_id)] = session
        return session

    def get(self, session_id: str, now: float) -> Session | None:
        """The live session with this id (its idle clock restarted), or None."""
        with self._lock:
            key = _key(session_id)
            session = self._held.get(key)
            if session is None or not self._alive(session, now):
                self._held.pop(key, None)
                return None
            self._held[key] = replace(session, seen=now)
            return self._held[key]

    def close(self, session_id: str) -> None:
        with self._lock:
            self._held.pop(_key(session_id), None)

    def close_all(self, user: str) -> None:
        """After a password change: every session of that user ends."""
        with self._lock:
            self._held = {k: s for k, s in self._held.items() if s.user != user}

    def _alive(self, session: Session, now: float) -> bool:
        return now - session.seen < self.idle_s and now - session.created < self.max_s

    def _expire(self, now: float) -> None:
        self._held = {k: s for k, s in self._held.items() if self._alive(s, now)}


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf_token.encode(),
                                                         presented.encode())
