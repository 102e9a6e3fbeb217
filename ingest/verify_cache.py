"""The answers of recipient verification probes, pure: kept by address until they expire, a
positive answer longer than a negative one, and at most `size` of them (the least recently used
goes first), so a sender naming a million random recipients costs bounded memory."""

from __future__ import annotations

from collections import OrderedDict


class VerifyCache:
    def __init__(self, size: int, positive_ttl_s: float, negative_ttl_s: float) -> None:
        if size < 1 or positive_ttl_s <= 0 or negative_ttl_s <= 0:
            raise ValueError("size and both TTLs must be positive")
        self._size = size
        self._ttl = {True: positive_ttl_s, False: negative_ttl_s}
        self._entries: OrderedDict[str, tuple[bool, float]] = OrderedDict()

    def get(self, address: str, now: float) -> bool | None:
        """True: the next hop took the address; False: it refused it; None: not known (never
        asked, expired, or pushed out)."""
        key = address.casefold()
        entry = self._entries.get(key)
        if entry is None:
            return None
        exists, expires = entry
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return exists

    def put(self, address: str, exists: bool, now: float) -> None:
        key = address.casefold()
        self._entries[key] = (exists, now + self._ttl[exists])
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
