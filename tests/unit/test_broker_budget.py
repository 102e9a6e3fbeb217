"""The budget's arithmetic (bench/broker_budget.py) on fixed counters: deltas between two
snapshots, per message and per second, net of an idle window, and its markdown."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bench.broker_budget import budget, follower_cost, transactions, written
from bench.budget_table import budget_markdown
from bench.follower import fetches


def snap(at, requests, records, cpu, txns, cpu_ns, by_topic=None, threads=None):
    return {
        "at": at,
        "broker": {"requests": requests, "MessagesInPerSec": records,
                   "MessagesInPerSecByTopic": by_topic or {}, "BytesInPerSec": records * 100,
                   "BytesInPerSecByTopic": {}, "BytesOutPerSec": records * 300,
                   "BytesOutPerSecByTopic": {}, "ProcessCpuTimeNs": cpu_ns},
        "transactions": txns, "written": {"ingest": {"raw": records / 2}}, "cpu_s": cpu,
        "threads_cpu_s": threads or {},
    }


BEFORE = snap(100.0, {"Produce": 50, "Fetch": 1000, "Heartbeat": 10}, 400,
              {"broker": 10.0, "ingest": 2.0}, {"ingest": 5, "decider": 7}, 10_000_000_000,
              {"bench.mail": 300, "bench.raw": 100},
              {"ingest python": 1.5, "ingest librdkafka": 0.5, "broker request handling": 6.0})
AFTER = snap(120.0, {"Produce": 350, "Fetch": 1800, "FetchConsumer": 800, "Heartbeat": 30,
                     "EndTxn": 100}, 2400,
             {"broker": 20.0, "ingest": 7.0, "decider": 4.0},
             {"ingest": 45, "decider": 67, "apply": 20}, 20_200_000_000,
             {"bench.mail": 1300, "bench.raw": 1100},
             {"ingest python": 4.5, "ingest librdkafka": 2.5, "broker request handling": 12.0,
              "decider librdkafka": 1.0})
# 10 s of quiet: 100 Fetch (10/s), 10 Heartbeat (1/s), 0.5 s of broker CPU (50 ms/s).
IDLE = (snap(0.0, {"Fetch": 0, "Heartbeat": 0}, 0, {"broker": 0.0}, {}, 0),
        snap(10.0, {"Fetch": 100, "Heartbeat": 10}, 0, {"broker": 0.5}, {}, 500_000_000))


def test_per_message_figures_are_the_deltas_divided_by_the_messages():
    b = budget(BEFORE, AFTER, 100, active_s=10.0)
    assert b["seconds"] == 20.0
    assert b["msgs_per_s"] == 10.0  # over the active seconds
    assert b["requests_per_msg"] == {"Fetch": 8.0, "Produce": 3.0, "EndTxn": 1.0,
                                     "Heartbeat": 0.2, "total": 12.2}
    assert list(b["requests_per_msg"])[:2] == ["Fetch", "Produce"]  # largest first
    # The broker's split of the fetches, counted apart: not twice in the total.
    assert b["fetch_kinds_per_msg"] == {"FetchConsumer": 8.0, "total": 8.0}
    assert b["records_per_msg"] == 20.0
    assert b["records_per_msg_by_topic"] == {"bench.mail": 10.0, "bench.raw": 10.0,
                                             "total": 20.0}
    assert b["bytes_in_per_msg"] == 2000
    assert b["bytes_out_per_msg"] == 6000
    assert b["transactions_per_msg"] == {"decider": 0.6, "ingest": 0.4, "apply": 0.2,
                                         "total": 1.2}
    assert b["transactions_per_s"] == {"decider": 6.0, "ingest": 4.0, "apply": 2.0,
                                       "total": 12.0}
    assert b["end_txn_per_msg"] == 1.0
    assert b["cpu_ms_per_msg"] == {"broker": 100.0, "ingest": 50.0, "decider": 40.0,
                                   "total": 190.0}
    assert b["broker_cpu_ms_per_msg_jmx"] == 102.0
    assert b["broker_cpu_ms_per_msg_proc"] == 100.0
    # A process that started between the snapshots counts from zero.
    assert b["cpu_ms_per_msg_by_thread"] == {
        "broker request handling": 60.0, "ingest python": 30.0, "ingest librdkafka": 20.0,
        "decider librdkafka": 10.0, "total": 120.0}
    assert b["written_per_msg"] == {"ingest": {"raw": 10.0, "total": 10.0}}
    assert "idle" not in b


def test_the_idle_rate_over_the_window_is_taken_off():
    b = budget(BEFORE, AFTER, 100, idle=IDLE)
    assert b["idle"]["requests_per_s"] == {"Fetch": 10.0, "Heartbeat": 1.0, "total": 11.0}
    # 20 s of window: 200 Fetch and 20 Heartbeat were background.
    assert b["requests_per_msg_net"]["Fetch"] == 6.0
    assert b["requests_per_msg_net"]["Heartbeat"] == 0.0
    assert b["requests_per_msg_net"]["total"] == 10.0
    assert b["idle"]["cpu_ms_per_s"] == {"broker": 50.0, "total": 50.0}
    assert b["cpu_ms_per_msg_net"]["broker"] == 90.0
    assert b["cpu_ms_per_msg_net"]["ingest"] == 50.0


def test_transactions_are_read_by_stage_from_each_counter():
    text = """
# TYPE katagate_loop_transactions_total counter
katagate_loop_transactions_total{stage="admission",outcome="committed"} 12.0
katagate_loop_transactions_total{stage="admission",outcome="aborted"} 1.0
katagate_loop_transactions_total{stage="apply",outcome="committed"} 3.0
# TYPE katagate_ingest_writes_total counter
katagate_ingest_writes_total{outcome="durable"} 40.0
# TYPE katagate_scanner_transactions_total counter
katagate_scanner_transactions_total{part="scans",outcome="committed"} 9.0
# TYPE katagate_audit_transactions_total counter
katagate_audit_transactions_total 2.0
# TYPE katagate_events_written_total counter
katagate_events_written_total{topic="mail"} 77.0
# TYPE katagate_ingest_messages_accepted_total counter
katagate_ingest_messages_accepted_total 40.0
"""
    samples = [(s.name, dict(s.labels), s.value)
               for f in text_string_to_metric_families(text) for s in f.samples]
    assert transactions(samples) == {
        "admission": 12.0, "admission aborted": 1.0, "apply": 3.0,
        "scanner scans": 9.0, "audit": 2.0}  # ingest writes without transactions
    assert written(samples) == {"mail": 77.0}


def test_the_markdown_shows_every_figure_with_its_total():
    report = {"budget": {**budget(BEFORE, AFTER, 100, idle=IDLE, active_s=10.0), "size": 4096,
                         "concurrency": 10}}
    text = budget_markdown(report)
    assert "100 messages of 4096 bytes over 10 connections: 10.0 s" in text
    assert "| Fetch | 8.0 | 6.0 | 10.0 |" in text
    assert "| EndTxn | 1.0 | 1.0 | - |" in text
    assert "| **total** | 12.2 | 10.0 | 11.0 |" in text
    assert "| decider | 0.6 | 6.0 |" in text
    assert "(EndTxn, commits and aborts) per message: 1.0" in text
    assert "| broker | 100.0 | 90.0 | 50.0 |" in text
    assert "Records appended per message: 20.0" in text
    assert "Of the fetches per message: FetchConsumer 8.0" in text
    assert "(JMX ProcessCpuTime): 102.0; from /proc: 100.0" in text
    assert "| ingest librdkafka | 20.0 |" in text


def test_a_followers_cost_is_per_record_and_per_message():
    cost = follower_cost({"records": 7000, "fetches": 300},
                         {"librdkafka": 0.0861, "python": 0.0702}, 1000)
    assert cost["records_per_msg"] == 7.0
    assert cost["fetches_per_msg"] == 0.3
    assert cost["cpu_us_per_record"] == {"librdkafka": 12.3, "python": 10.0, "total": 22.3}
    assert cost["cpu_ms_per_msg"] == {"librdkafka": 0.086, "python": 0.07, "total": 0.156}
    report = {**budget(BEFORE, AFTER, 100, idle=IDLE, active_s=10.0), "follower": cost}
    text = budget_markdown(report)
    assert "read 7000 records (7.0 per message) with 0.3 fetches per message" in text
    assert "| librdkafka | 12.3 | 0.086 |" in text
    assert "| **total** | 22.3 | 0.156 |" in text
    assert "One more reader" not in budget_markdown(budget(BEFORE, AFTER, 100))


def test_a_followers_fetches_are_summed_over_its_broker_connections():
    stats = {"brokers": {"127.0.0.1:9092/1": {"req": {"Fetch": 40, "Produce": 3}},
                         "127.0.0.1:9092/bootstrap": {"req": {"Metadata": 2}},
                         "GroupCoordinator": {"req": {"Heartbeat": 5}}}}
    assert fetches(stats) == 40
    assert fetches({}) == 0
