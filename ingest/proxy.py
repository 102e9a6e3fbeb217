"""The HAProxy PROXY protocol (v1 text, v2 binary) on the SMTP listener: behind a load
balancer, the client is the address the header names, not the balancer's.

aiosmtpd parses the header (`aiosmtpd.proxy_protocol.get_proxy`); the policy is ours. Only a
peer in `proxy_protocol_hosts` may send one (anyone else could name any address and pass a
relay_networks check): others get `421 4.7.0` before a byte of theirs is read, a malformed header
`421 4.5.2`, no header within PROXY_TIMEOUT_S `421 4.4.2`; each then closed. aiosmtpd's own
handling would close without a word.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from aiosmtpd.proxy_protocol import ProxyData, get_proxy

from katagate.ingest import replies
from katagate.ingest.envelope import client_address, in_networks
from katagate.ingest.replies import Reply

# A balancer sends the header as it connects; this only bounds a peer that says nothing.
PROXY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ProxyOutcome:
    client: str | None  # the address to use; None: refused
    refusal: Reply | None = None
    port: int | None = None  # the client's port, when the header names one


def source_of(data: ProxyData, peer: str) -> tuple[str, int | None]:
    """The client the header names, address and port: its source, or the peer itself (no port)
    for a v2 LOCAL (the balancer's own health check), a v1 UNKNOWN or a Unix socket, as the
    spec says."""
    source = data.src_addr
    if isinstance(source, IPv4Address | IPv6Address) and data.command != 0:  # 0: LOCAL
        return str(client_address(str(source))), data.src_port
    return peer, None


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text[:120])


def untrusted(peer: str, hosts: Iterable[IPv4Network | IPv6Network]) -> Reply | None:
    """The refusal for a peer that may not send a PROXY header, or None."""
    if in_networks(peer, hosts):
        return None
    return replies.PROXY_UNTRUSTED.with_text(
        f"PROXY protocol header not accepted from {peer}: not in proxy_protocol_hosts, "
        "closing connection")


async def read_header(reader: asyncio.StreamReader, peer: str,
                      hosts: tuple[IPv4Network | IPv6Network, ...],
                      timeout_s: float = PROXY_TIMEOUT_S) -> ProxyOutcome:
    """Read the header from a trusted peer; the client it names, or why not."""
    refusal = untrusted(peer, hosts)
    if refusal is not None:
        return ProxyOutcome(None, refusal)
    try:
        data = await asyncio.wait_for(get_proxy(reader), timeout_s)
    except TimeoutError:
        return ProxyOutcome(None, replies.PROXY_TIMEOUT.with_text(
            f"No PROXY protocol header within {timeout_s:g} s, closing connection"))
    except (asyncio.IncompleteReadError, ConnectionError):
        return ProxyOutcome(None, None)  # gone before a header: nobody to answer
    if not data.valid:
        return ProxyOutcome(None, replies.PROXY_MALFORMED.with_text(
            f"Malformed PROXY protocol header ({_printable(data.error) or 'not PROXY v1 or v2'}), "
            "closing connection"))
    client, port = source_of(data, peer)
    return ProxyOutcome(client, port=port)
