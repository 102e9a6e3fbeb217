"""A processing process for the exactly-once tests: copies each input record to the output
topic through the transactional loop. It can crash itself after producing and before committing
(CRASH_AT_BATCH), or be killed from outside; it exits 0 after IDLE_EXIT_S without input."""

from __future__ import annotations

import os
import threading
import time

from katagate.eventlog.handler import Handler
from katagate.eventlog.loop import TransactionalLoop
from katagate.eventlog.records import Consumed, Outgoing
from katagate.eventlog.settings import KafkaSettings


class CopyHandler(Handler):
    def __init__(self, out_topic: str, sleep_s: float) -> None:
        self.out_topic = out_topic
        self.sleep_s = sleep_s

    def decide(self, record: Consumed) -> list[Outgoing]:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return [Outgoing(
            self.out_topic, b"out:" + (record.value or b""), record.key,
            (("in-offset", f"{record.partition}:{record.offset}".encode()),),
        )]


def main() -> int:
    env = os.environ
    settings = KafkaSettings(
        bootstrap_servers=env["EOS_BOOTSTRAP"], topic_prefix=env["EOS_PREFIX"],
        transaction_timeout_ms=10_000,
    )
    crash_at = int(env.get("CRASH_AT_BATCH", "0"))
    batches = 0
    loop: TransactionalLoop | None = None

    def before_commit() -> None:
        nonlocal batches
        batches += 1
        if batches == crash_at and loop is not None:
            loop.producer.flush()  # the outputs are in the log, the transaction still open
            os._exit(17)

    loop = TransactionalLoop(
        settings, stage="eos-test", group_id=env["EOS_GROUP"],
        transactional_id=env["EOS_TXN_ID"], instance_id=env["EOS_TXN_ID"],
        topics=[env["EOS_IN"]], handler=CopyHandler(env["EOS_OUT"], float(env.get("SLEEP_S", "0"))),
        dead_letter_topic=env["EOS_DLQ"], batch_size=int(env.get("BATCH_SIZE", "50")),
        before_commit=before_commit,
    )
    idle_exit_s = float(env.get("IDLE_EXIT_S", "3"))
    # Idle time counts from the first record: joining the group takes a moment.
    last_work: float | None = None
    started = time.monotonic()
    stop = threading.Event()
    try:
        while not stop.is_set():
            if loop.run_once():
                last_work = time.monotonic()
            elif last_work is not None and time.monotonic() - last_work > idle_exit_s:
                break
            elif last_work is None and time.monotonic() - started > 15:
                break  # nothing left to do: earlier runs finished the input
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
