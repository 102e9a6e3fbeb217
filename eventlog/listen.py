"""The address a stage's metrics listener binds: an IP literal, loopback unless set.

Metrics carry no credential, so where they listen is a decision, not a name to resolve: a host
name could resolve to a public address, or to another one after a restart. `0.0.0.0` (or `::`)
serves every interface, for a container whose Prometheus comes over the network.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator

LOOPBACK = "127.0.0.1"
_EVERY = {"0.0.0.0", "::"}  # noqa: S104 - compared with, never bound here


def _ip_literal(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(
            f"not an IP address to listen on: {value[:80]!r} (127.0.0.1 or ::1 for this host "
            "only, 0.0.0.0 or :: for every interface)") from None


ListenHost = Annotated[str, AfterValidator(_ip_literal)]


def same_listener(host: str, port: int, other_host: str, other_port: int) -> bool:
    """True if two listeners would share an address: the same fixed port on the same IP or
    with either on every interface (port 0 picks a free port, never a taken one)."""
    if port == 0 or port != other_port:
        return False
    return host == other_host or host in _EVERY or other_host in _EVERY


def refuse_metrics_on(listener: str, host: str, port: int, metrics_host: str,
                      metrics_port: int | None) -> None:
    """Raises ValueError, naming the settings, if metrics would share `listener`'s address."""
    if metrics_port is not None and same_listener(metrics_host, metrics_port, host, port):
        raise ValueError(
            f"metrics_host:metrics_port ({metrics_host}:{metrics_port}) is the {listener} "
            f"listener's address ({host}:{port}): metrics are unauthenticated and never served "
            "there; give metrics_port another port")
