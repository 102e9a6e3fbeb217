"""Who may hold an SMTP session: a cap on sessions in all and per client address, so that idle
or slow connections from one client cannot take every slot (Postfix's process_limit and
anvil's smtpd_client_connection_count_limit play this part there). A client is an IPv4
address, or an IPv6 network of `client_ipv6_prefix` bits (a /64 by default): one IPv6 host
commonly holds a whole /64, so counting by /128 would give it 2^64 allowances.

And the DATA deadline under a minimum rate (Postfix 3.7's smtpd_min_data_rate): each read of
N octets buys N/rate seconds, never more than the whole timeout ahead, so a client that sends
one byte a second is cut off after about the timeout instead of holding a session for ever.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from katagate.ingest import replies
from katagate.ingest.envelope import client_address
from katagate.ingest.replies import Reply
from katagate.ingest.shared_counts import SharedCounts


def client_key(peer: str, ipv6_prefix: int) -> str:
    """What the per-client caps count: the IPv4 address (also when it arrives IPv4-mapped on a
    dual-stack socket), or the IPv6 network of `ipv6_prefix` bits holding the address."""
    try:
        ip = client_address(peer)
    except ValueError:
        return peer  # not an IP address (a Unix socket): itself
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))


@dataclass
class SessionTable:
    """The caps, counted here, and with `shared` (ingest's SMTP workers, ingest/shared_counts.py)
    decided on the counts of every worker, this one's mirrored there."""

    max_sessions: int
    max_per_client: int
    shared: SharedCounts | None = None
    _per_client: Counter[str] = field(default_factory=Counter)
    _total: int = 0

    def _held(self, client: str) -> int:
        return self.shared.client(client) if self.shared is not None else self._per_client[client]

    def admit(self, client: str | None) -> Reply | None:
        """None if the client may open one more session (it is then counted), else the reply
        that refuses it. A client None is not known yet (a PROXY header will name it): counted
        in all only, until `identify`."""
        if client is not None and self._held(client) >= self.max_per_client:
            return self._too_many_from(client)
        total = self.shared.total() if self.shared is not None else self._total
        if total >= self.max_sessions:
            return replies.TOO_MANY_SESSIONS
        if client is not None:
            self._per_client[client] += 1
        self._total += 1
        if self.shared is not None:
            self.shared.add(client, 1)
        return None

    def identify(self, client: str) -> Reply | None:
        """A session admitted as None is `client`'s: counted for it, or refused (and then no
        longer counted at all)."""
        if self._held(client) >= self.max_per_client:
            self.release(None)
            return self._too_many_from(client)
        self._per_client[client] += 1
        if self.shared is not None:
            self.shared.add_client(client, 1)
        return None

    def _too_many_from(self, client: str) -> Reply:
        return replies.TOO_MANY_FROM_CLIENT.with_text(
            f"Too many connections from {client}: limit {self.max_per_client}")

    def release(self, client: str | None) -> None:
        if client is None:
            if self._total > 0:
                self._total -= 1
                if self.shared is not None:
                    self.shared.add(None, -1)
            return
        if self._per_client[client] <= 0:
            return
        self._per_client[client] -= 1
        self._total -= 1
        if self.shared is not None:
            self.shared.add(client, -1)
        if not self._per_client[client]:
            del self._per_client[client]

    @property
    def total(self) -> int:
        return self._total


def next_data_deadline(deadline: float, now: float, octets: int, *, timeout_s: float,
                       min_rate: int) -> float:
    """The DATA deadline after a read of `octets` at `now`. With min_rate 0 it is plain
    inactivity: the whole timeout from now."""
    if min_rate <= 0:
        return now + timeout_s
    return min(deadline + octets / min_rate, now + timeout_s)
