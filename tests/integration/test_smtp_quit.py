"""A kept connection to the next hop is closed with a QUIT that waits a bound of its own: the
loop's sweep closes every kept connection in turn, and a next hop that stops answering must not
hold it for the delivery's SMTP timeout each."""

from __future__ import annotations

import socket
import threading
import time

from katagate.decider.smtp_out import QUIT_TIMEOUT_S, SessionCache
from tests.integration.test_smtp_out import _deliver, _raw_server


def test_given_a_kept_connection_whose_next_hop_hangs_then_its_quit_waits_only_its_bound():
    """The loop's sweep closes every kept connection in turn: one whose next hop stops
    answering holds it for QUIT_TIMEOUT_S, not for the delivery's SMTP timeout."""
    quit_asked = threading.Event()
    done = threading.Event()

    def script(connection: socket.socket) -> None:
        replies = {b"EHLO": b"250 hi\r\n", b"MAIL": b"250 ok\r\n", b"RCPT": b"250 ok\r\n",
                   b"DATA": b"354 go\r\n"}
        connection.sendall(b"220 next hop\r\n")
        stream = connection.makefile("rb")
        while line := stream.readline():
            verb = line[:4].upper()
            if verb == b"QUIT":
                quit_asked.set()
                done.wait(30)  # never answers
                return
            connection.sendall(replies.get(verb, b"250 ok\r\n"))
            if verb == b"DATA":
                while stream.readline() not in (b".\r\n", b""):
                    pass
                connection.sendall(b"250 queued\r\n")

    port, thread = _raw_server(script)
    now = [0.0]
    cache = SessionCache(idle_s=2.0, clock=lambda: now[0])
    assert _deliver(port, cache=cache, timeout_s=60).kind == "delivered"
    assert len(cache) == 1
    now[0] = 3.0
    began = time.monotonic()
    cache.sweep()
    took = time.monotonic() - began
    done.set()
    thread.join(5)
    assert quit_asked.is_set()
    assert len(cache) == 0
    assert QUIT_TIMEOUT_S - 0.5 < took < QUIT_TIMEOUT_S + 2, f"{took:.1f} s"
