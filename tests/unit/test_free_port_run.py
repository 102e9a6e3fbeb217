"""free_port_run: consecutive free ports outside the range outgoing connections draw from."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from katagate.eventlog.broker import free_port_run


def test_the_ports_are_free_consecutive_and_below_the_ephemeral_range():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    base = free_port_run(3)
    assert base >= 10000
    assert base + 3 <= low
    with contextlib.ExitStack() as stack:
        for port in range(base, base + 3):
            stack.enter_context(socket.socket()).bind(("127.0.0.1", port))


def test_a_taken_port_is_never_part_of_the_run():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port_run(1)))
        port = taken.getsockname()[1]
        runs = [free_port_run(2000) for _ in range(5)]  # long runs, likely to meet it if allowed
    assert all(not base <= port < base + 2000 for base in runs)
