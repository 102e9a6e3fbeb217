"""The benchmark's Postfix peer (bench/postfix_peer.py) works: a private instance of Debian's
Postfix relays every message of the load into the `katagate sink`, its processes' CPU time is
counted, and closing it leaves nothing behind. Needs postfix (scripts/system-packages) and root,
as CI has: without them it fails, never skips."""

from __future__ import annotations

from bench.postfix_peer import PostfixPeer
from katagate.demo_sink.store import read_messages

# Enough mail that each Postfix daemon's share passes the kernel's 10 ms tick: with 20
# messages, all of them could show 0 CPU on a fast run.
MESSAGES = 200


def test_the_peer_relays_the_load_into_the_sink_and_counts_postfix_cpu() -> None:
    peer = PostfixPeer()
    try:
        figures = peer.level(MESSAGES, 4)
        stored = read_messages(peer.sink_dir)
    finally:
        peer.close()
    assert figures["messages"] == MESSAGES
    assert figures["refused"] == 0
    assert len(stored) == MESSAGES
    # Relayed by Postfix, not sent to the sink directly.
    assert all(b"by postfix.example.net (Postfix)" in m.data for m in stored)
    assert sorted(m.recipients for m in stored) == [["rcpt@example.net"]] * MESSAGES
    assert figures["cpu_ms_per_message_groups"]["postfix"] > 0
    assert figures["cpu_ms_per_message_groups"]["sink"] > 0
    assert figures["end_to_end_msgs_per_s"] > 0
    assert figures["p99_ms"] > 0
    assert not peer.instance.root.exists()
