"""Reading partitions to an end: the one way katagate reads a log "as it stands now" and stops.

`read_to_end` yields every committed record from given starts up to given ends (exclusive),
then returns. The ends are taken before the read, usually the last stable offsets
(`last_stable_offsets`): records committed while it reads wait for the next read, and a
transaction left open does not hold it up. Manual assignment, no consumer group, nothing
committed. Following a log live (a stage's loop, a view kept up to date) is another thing:
`loop.py`, `folded.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from katagate.eventlog.errors import KafkaUnavailable, ReadStalled

log = logging.getLogger(__name__)

Place = tuple[str, int]  # (topic, partition)

# Errors that waiting cannot cure; any other (a broker restarting, a leader moving, a request
# timing out) librdkafka recovers from by itself, and the stall deadline bounds the wait.
_HOPELESS = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError._AUTO_OFFSET_RESET,
    KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._FATAL,
})


def partitions(consumer: Consumer, topic: str, timeout_s: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaUnavailable(f"topic {topic} is not available")
    return sorted(metadata.partitions)


WATERMARK_TRY_S = 5.0


def watermarks(consumer: Consumer, place: Place, timeout_s: float) -> tuple[int, int]:
    """(low, end) of a partition; for a read_committed consumer the end is the last stable
    offset. Retried: right after topic creation, under load or with a node just killed the
    broker may answer 'not leader' or time out for a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        # Each try gets a few seconds, not the whole budget: a request sent to a leader that
        # just died waits out its timeout, while a new try goes where fresh metadata points.
        left = max(0.1, deadline - time.monotonic())
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(*place), timeout=min(WATERMARK_TRY_S, left), cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"watermarks of {place[0]}[{place[1]}]: {exc}") from exc
            time.sleep(0.2)


def last_stable_offsets(
    consumer: Consumer, places: Collection[Place], timeout_s: float
) -> dict[Place, int]:
    """The ends to read to: what read_committed readers can see of each partition now."""
    return {place: watermarks(consumer, place, timeout_s)[1] for place in places}


def read_to_end(
    consumer: Consumer, starts: Mapping[Place, int], ends: Mapping[Place, int],
    timeout_s: float, batch: int = 1000,
) -> Iterator[Message]:
    """Every record of the partitions in `starts`, from its start up to its end (exclusive), in
    offset order within a partition, then stop. A partition whose start is at or past its end is
    not read. No record for `timeout_s` while some partition is short of its end raises
    ReadStalled; an error that waiting cannot cure raises KafkaUnavailable at once. The consumer
    is assigned for the read and unassigned after it."""
    todo = {place: start for place, start in starts.items() if start < ends[place]}
    if not todo:
        return
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in todo.items()])
    deadline = time.monotonic() + timeout_s
    last_error: KafkaError | None = None
    try:
        while todo:
            # What is fetched already, else wait for one: consume(n, timeout) would wait out
            # the whole timeout whenever fewer than n records are left.
            messages = consumer.consume(batch, 0)
            if not messages:
                waited = consumer.poll(0.2)
                messages = [] if waited is None else [waited]
            for message in messages:
                place = (message.topic() or "", message.partition() or 0)
                offset = message.offset() or 0
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        if place in todo and offset >= ends[place]:
                            del todo[place]
                    elif error.fatal() or error.code() in _HOPELESS:
                        raise KafkaUnavailable(f"reading {place[0]}[{place[1]}]: {error}")
                    else:
                        log.debug("reading to the end: %s", error)
                        last_error = error
                    continue
                if place not in todo or offset >= ends[place]:
                    continue
                yield message
                # The caller's time between records is not the log's: measured from here.
                deadline = time.monotonic() + timeout_s
                todo[place] = offset + 1  # where it stands, for the stall's message
                if offset + 1 >= ends[place]:
                    del todo[place]
            # Transaction markers occupy offsets but are never delivered: a partition whose
            # last records before its end are markers is done when its position says so.
            if todo:
                for tp in consumer.position([TopicPartition(*place) for place in todo]):
                    place = (tp.topic, tp.partition)
                    if place in todo and tp.offset >= ends[place]:
                        del todo[place]
                    elif place in todo:
                        todo[place] = max(todo[place], tp.offset)
            if todo and time.monotonic() > deadline:
                why = "" if last_error is None else f"; last error: {last_error}"
                raise ReadStalled(f"reading stalled at {todo} (ends {dict(ends)}){why}")
    finally:
        consumer.unassign()
