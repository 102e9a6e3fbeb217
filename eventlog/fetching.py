"""How katagate's following readers fetch: not again while what they fetched waits, and under
load over a linger, gathered with one fetch at its end.

librdkafka keeps a fetch outstanding at all times, and the broker answers it at the first new
record. Every reader of `katagate.mail` (six, each stage's) then made about one fetch per
record written to it, seven a message. A busy stage needs one fetch per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# Held while its queue is not empty, the next fetch returns all that came in meanwhile. An idle
# reader's queue is empty, so its fetch waits at the broker as before, and a record finds it at
# once. The backoff is how soon a drained queue fetches again (librdkafka's default, 1 s,
# would stall a busy stage); the client's thread checks that often while records wait.
FETCH_WHEN_DRAINED: dict[str, Any] = {"queued.min.messages": 1, "fetch.queue.backoff.ms": 5}
# After a linger: how long the fetch of what the broker gathered meanwhile may take (the
# backoff above and a round trip to a busy broker). Records it misses come with the next read.
GATHER_FETCH_S = 0.02


def lingered(consumer: Any, most: int, linger_s: float) -> list[Any]:
    """Up to `most` records: at once if that many wait already, else what came in over the
    linger, fetched at its end.

    The consumer (FETCH_WHEN_DRAINED) does not consume meanwhile, so the client holds its next
    fetch while what it fetched waits; once that is taken, one fetch brings what the broker
    gathered (with the one that waited at the linger's start, two fetches, not one a record).
    Consuming through the linger took each record as it came, and fetched again for each.
    A reader catching up lingers at the tail of each fetch's worth that is short of `most`.
    """
    messages: list[Any] = consumer.consume(most, 0)
    if len(messages) < most:
        time.sleep(linger_s)
        messages += consumer.consume(most - len(messages), 0)
    if len(messages) < most:
        messages += consumer.consume(most - len(messages), GATHER_FETCH_S)
    return messages


def gathered(consumer: Any, most: int, wait_s: float, linger_s: float,
             after_wait: Callable[[], None] = lambda: None) -> list[Any]:
    """A reader's next batch: what is already fetched, up to `most`; if nothing, the first
    record within `wait_s` and what came with it. `after_wait` runs once the wait returned (a
    loop raises there a failure of the rebalance callback its poll ran).

    A plain consume(most, timeout) waits out the whole timeout unless a full batch arrives:
    under light traffic every record would wait that long at every stage.
    """
    messages: list[Any] = consumer.consume(most, 0)
    # Records that came in while the last batch was decided and committed: the stage is
    # busy, and a transaction costs the broker about ten requests whatever it holds.
    backlog = bool(messages)
    if not messages:
        first = consumer.poll(wait_s)
        after_wait()
        if first is None:
            return []
        messages = [first, *consumer.consume(most - 1, 0)]
    if linger_s and backlog and len(messages) < most:
        # Under load: let this transaction gather up to the linger more. A record that
        # finds the stage idle never waits.
        messages += lingered(consumer, most - len(messages), linger_s)
    return messages
