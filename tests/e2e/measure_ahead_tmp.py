"""Not a test: measures apply's reply -> acknowledgement window and the broker's records and
transactions per message, through the in-process gateway and the demo sink."""
from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections import Counter

from katagate.eventlog.metrics import EVENTS_WRITTEN, LOOP_BATCHES
from tests.conftest import ensure_namespace
from tests.e2e.gateway import Gateway, is_terminal
from tests.integration.kafka_read import read_all
from tests.integration.kata_harness import wait_for

N = int(os.environ.get("MEASURE_N", "300"))


def test_measure(kafka_bootstrap, tmp_path):
    samples: list[float] = []
    try:
        from katagate.decider import metrics as dm
        original = dm.REPLY_TO_RECORD.observe
        dm.REPLY_TO_RECORD.observe = lambda v: (samples.append(v), original(v))  # type: ignore
    except ImportError:
        pass
    kafka = ensure_namespace(kafka_bootstrap)
    gw = Gateway(kafka, tmp_path)
    try:
        before_tx = LOOP_BATCHES.labels("apply", "committed")._value.get()
        before_ab = LOOP_BATCHES.labels("apply", "aborted")._value.get()
        began = time.monotonic()
        ids: list[str] = []
        lock = threading.Lock()

        def sender(k: int) -> None:
            for n in range(k, N, 4):
                m = gw.send((f"From: a@example.org\r\nTo: bob@example.net\r\nSubject: m {n}\r\n"
                             f"Message-ID: <m-{n}@example.org>\r\n\r\nbody {n}\r\n").encode())
                with lock:
                    ids.append(m)
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        def settled():
            events = [r for r in read_all(kafka, gw.names.mail)]
            from katagate.schemas import decode_event
            decoded = [decode_event(r.value) for r in events]
            t = Counter(e.message_id for e in decoded if is_terminal(e))
            return (events, decoded) if len(t) >= N else None
        records, decoded = wait_for(settled, 300, "all terminal")
        took = time.monotonic() - began
        time.sleep(2)
        tx = LOOP_BATCHES.labels("apply", "committed")._value.get() - before_tx
        ab = LOOP_BATCHES.labels("apply", "aborted")._value.get() - before_ab
        by_type = Counter(e.type for e in decoded)
        out = {"messages": N, "seconds": round(took, 1),
               "apply_transactions": tx, "apply_aborted": ab,
               "apply_tx_per_message": round(tx / N, 3),
               "mail_records": len(records), "mail_records_per_message": round(len(records) / N, 3),
               "by_type": dict(by_type),
               "backup_records": len(read_all(kafka, gw.names.backup)),
               "events_written": {k[0]: v._value.get() for k, v in EVENTS_WRITTEN._metrics.items()}}
        if samples:
            s = sorted(samples)
            out["reply_to_ack_ms"] = {
                "n": len(s), "p50": round(1000 * statistics.median(s), 2),
                "p99": round(1000 * s[min(len(s) - 1, int(0.99 * len(s)))], 2),
                "max": round(1000 * s[-1], 2), "mean": round(1000 * statistics.mean(s), 2)}
        print("MEASURE", json.dumps(out))
        with open(os.environ.get("MEASURE_OUT", "/tmp/i24ahead/measure.json"), "w") as f:
            json.dump(out, f)
    finally:
        gw.close()
