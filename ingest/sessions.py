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
    max_sessions: int
    max_per_client: int
    _per_client: Counter[str] = field(default_factory=Counter)
    _total: int = 0

    def admit(self, client: str) -> Reply | None:
        """None if the client may open one more session (it is then counted), else the reply
        that refuses it."""
        if self._per_client[client] >= self.max_per_client:
            return replies.TOO_MANY_FROM_CLIENT.with_text(
                f"Too many connections from {client}: limit {self.max_per_client}")
        if self._total >= self.max_sessions:
            return replies.TOO_MANY_SESSIONS
        self._per_client[client] += 1
        self._total += 1
        return None

    def release(self, client: str) -> None:
        if self._per_client[client] <= 0:
            return
        self._per_client[client] -= 1
        self._total -= 1
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
