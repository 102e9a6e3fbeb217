"""The projector's folds, Given / When / Then: quarantine usage, counters, timelines and
summaries — each ledger event counted once of its two copies, and independent of how the
topics interleave on arrival. (The connection window: test_projector_connection_view.py.)"""

from __future__ import annotations

import random
from datetime import timedelta
from functools import reduce
from typing import Any

from katagate.projector import counters, quarantine
from katagate.projector.canonical import document
from katagate.projector.copies import LedgerCopies
from katagate.projector.counters import Counters
from katagate.projector.quarantine import QuarantineView
from katagate.projector.search_filters import parse
from katagate.projector.summary import terminal_outcome
from katagate.projector.views import Projections, evolve
from katagate.schemas import Event, decode_event, encode_event
from tests.unit.test_projector_flows import (
    ALL_SCENARIOS,
    SCENARIOS,
    Routed,
    all_flows,
    control_flow,
    message_flow,
)


def fold_all(routed: Routed) -> Projections:
    return reduce(evolve, (e for _t, e in routed), Projections())


def first_copies(events: list[Event]) -> list[Event]:
    """What reaches the folds: the second copy of each ledger event removed."""
    copies = LedgerCopies()
    return [e for e in events if copies.first(e)]


def interleave(routed: Routed, seed: int) -> list[Event]:
    """A random merge of the per-partition sequences: each topic (and each message on mail)
    keeps its own order, as Kafka guarantees, and nothing else is kept."""
    queues: dict[str, list[Event]] = {}
    for topic, event in routed:
        key = f"mail:{getattr(event, 'message_id', '')}" if topic == "mail" else topic
        queues.setdefault(key, []).append(event)
    rng = random.Random(seed)
    merged: list[Event] = []
    while queues:
        key = rng.choice(sorted(queues))
        merged.append(queues[key].pop(0))
        if not queues[key]:
            del queues[key]
    return merged


def rendered(views: Projections) -> list[bytes]:
    docs = [views.document(name) for name in ("connection", "quarantine", "counters")]
    return docs + [document(views.message(m)) for m in views.message_ids()]


# -- quarantine usage --------------------------------------------------------------------

def test_quarantine_counts_a_mirrored_admission_once() -> None:
    # Given a message admitted (the ledger event and its mirror on the message)
    flow = message_flow(1, "clean")[:4]  # received, admitted, mirror, submitted
    # When both copies are read
    view = reduce(quarantine.evolve, first_copies([e for _t, e in flow]), QuarantineView())
    # Then it counts once, under its rule
    usage = quarantine.render(view)
    assert (usage["bytes_in_use"], usage["messages_in_use"]) == (1001, 1)
    assert usage["per_rule"] == {"inbound-finance": {"bytes_in_use": 1001,
                                                     "messages_in_use": 1}}


def test_a_release_read_before_the_mirrored_admission_leaves_nothing_held() -> None:
    # Given the ledger topic read first (admitted, released), the mail mirror after
    flow = message_flow(2, "clean")
    ledger = [e for t, e in flow if t == "quarantine"]
    mirrors = [e for t, e in flow if t == "mail" and e.type.startswith("quarantine.")]
    # When the mirrored admission arrives after the release
    view = reduce(quarantine.evolve, first_copies([*ledger, *mirrors]), QuarantineView())
    # Then the message is not held again
    usage = quarantine.render(view)
    assert (usage["bytes_in_use"], usage["messages_in_use"]) == (0, 0)
    assert usage["released_total"] == 1


def test_quarantine_limits_follow_the_settings_and_usage_the_held_messages() -> None:
    # Given settings with a 100-message limit, and messages in flight
    routed = control_flow() + [pair for i in range(6) for pair in message_flow(i)[:4]]
    view = reduce(quarantine.evolve, first_copies([e for _t, e in routed]), QuarantineView())
    usage = quarantine.render(view)
    # Then five are held (the count-limit one was denied) against the configured limits
    assert usage["limit_messages"] == 100
    assert usage["limit_bytes"] == 1024 * 1_048_576
    assert usage["messages_in_use"] == 5
    assert usage["messages_free"] == 95
    assert usage["bytes_in_use"] == sum(1000 + i for i in (0, 1, 2, 4, 5))
    assert set(usage["per_rule"]) == {"default", "inbound-finance"}
    assert usage["denied_total"] == 1


# -- counters ----------------------------------------------------------------------------

def test_counters_count_each_decision_verdict_denial_and_outcome_once() -> None:
    # Given two messages of every scenario, ledger events mirrored
    view = reduce(counters.evolve, first_copies([e for _t, e in all_flows(12)]), Counters())
    # Then each is counted once
    counts = counters.render(view)
    assert counts["actions"] == {"deliver": 8, "delete": 2, "reject": 2}
    assert counts["verdict_states"] == {"not_detected": 2, "detect": 4, "error": 2,
                                        "response_timeout": 2}
    assert counts["skipped_reasons"] == {"count_limit": 2, "timeout": 2, "error": 2}
    assert counts["denial_reasons"] == {"count_limit": 2}
    assert counts["outcomes"] == {"delivered": 6, "discarded": 2, "ndr_sent": 2,
                                  "delivery_failed": 2}
    assert counts["quarantine"] == {"admitted": 10, "denied": 2, "released": 10}
    assert counts["late_verdict_states"] == {"detect": 2}
    assert counts["messages"] == {"received": 12}


# -- timelines and summaries -------------------------------------------------------------

def folded(events: list[Event]) -> Projections:
    return reduce(evolve, events, Projections())


def test_a_timeline_holds_each_event_once_in_lifecycle_order() -> None:
    # Given a rejected message, the ledger copies read before the mail partition
    flow = message_flow(2, "rejected")
    ledger_first = [e for t, e in flow if t == "quarantine"] + [e for t, e in flow
                                                                if t == "mail"]
    # When folded
    views = folded(ledger_first)
    # Then the timeline is in lifecycle order, each event once
    doc = views.message("MSG00000002")
    assert doc is not None
    assert [e["type"] for e in doc["events"]] == [
        "mail.received", "quarantine.admitted", "scan.submitted", "scan.verdict",
        "action.decided", "quarantine.released", "ndr.sent"]
    assert doc["event_count"] == 7
    assert doc["decision"] == {"action": "reject", "reason": "detected", "skipped": False,
                               "tag": None, "backup": False}
    assert doc["outcome"] == "ndr_sent"
    assert doc["scan_state"] == "detect"
    assert doc["verdict"] == "detected"
    assert doc["quarantine"] == {"admitted": True, "reason": None}
    first = doc["events"][0]
    assert first["producer"] == "ingest/ingest-0"
    assert first["fields"]["size"] == 1002
    assert "raw" not in first["fields"]


def test_an_ndr_after_a_failed_delivery_is_not_the_outcome() -> None:
    doc = folded([e for _t, e in message_flow(5, "error")]).message("MSG00000005")
    assert doc is not None
    assert doc["outcome"] == "delivery_failed"
    assert doc["decision"]["skipped"] is True


def test_unknown_message_has_no_timeline_and_ids_page_in_order() -> None:
    views = folded([e for _t, e in all_flows(5)])
    assert views.message("MSG99999999") is None
    assert list(views.message_ids()) == [f"MSG{i:08d}" for i in range(5)]
    assert list(views.message_ids(after="MSG00000002")) == ["MSG00000003", "MSG00000004"]


def reference_summary(message_id: str, events: list[dict[str, Any]],
                      by_id: dict[str, Event]) -> dict[str, Any]:
    """The summary's specification: a fold over the timeline in timeline order, the later
    event winning, except the outcome (the first terminal event, named as schemas names it)
    and a response timeout (shown only where no verdict came). `by_id`: the events folded."""
    quarantine_: dict[str, Any] | None = None
    verdict: str | None = None
    detects: list[dict[str, Any]] = []
    timed_out = False
    decision: dict[str, Any] | None = None
    outcome: str | None = None
    rule_id: str | None = None
    received: dict[str, Any] = {}
    received_at: str | None = None
    delivery: tuple[str, dict[str, Any]] | None = None
    retained: dict[str, Any] | None = None
    removed: dict[str, Any] | None = None
    for item in events:
        kind, fields = item["type"], item["fields"]
        if kind == "mail.received":
            rule_id, received, received_at = fields["rule_id"], fields, item["occurred_at"]
        elif kind == "quarantine.admitted":
            quarantine_ = {"admitted": True, "reason": None}
        elif kind == "quarantine.denied":
            quarantine_ = {"admitted": False, "reason": fields["reason"]}
        elif kind == "scan.verdict":
            verdict = fields["state"]
            detects = [{"type": d["type"], "name": d["name"]} for d in fields["detects"]]
        elif kind == "scan.timed_out":
            timed_out = True
        elif kind == "action.decided":
            decision = {k: fields[k] for k in ("action", "reason", "skipped", "tag", "backup")}
        elif kind == "backup.retained":
            retained = fields
        elif kind == "backup.removed" and removed is None:
            removed = fields
        elif outcome is None:
            outcome = terminal_outcome(by_id[item["event_id"]])
        if kind in ("delivery.deferred", "delivery.delivered", "delivery.failed"):
            delivery = (kind, fields)
    scan_state = verdict if verdict is not None else (
        "response_timeout" if timed_out else None)
    return {
        "message_id": message_id, "rule_id": rule_id,
        "first_at": events[0]["occurred_at"], "last_at": events[-1]["occurred_at"],
        "event_count": len(events), "quarantine": quarantine_,
        "scan_state": scan_state,
        "late_verdicts": [i["fields"]["state"] for i in events
                          if i["type"] == "scan.late_verdict"],
        "decision": decision, "outcome": outcome,
        **reference_row(received, received_at, scan_state, detects, decision, outcome,
                        delivery, retained, removed),
    }


def reference_row(received: dict[str, Any], received_at: str | None, scan_state: str | None,
                  detects: list[dict[str, Any]], decision: dict[str, Any] | None,
                  outcome: str | None, delivery: tuple[str, dict[str, Any]] | None,
                  retained: dict[str, Any] | None,
                  removed: dict[str, Any] | None) -> dict[str, Any]:
    """The row's keys, as the contract of issue 20 names them."""
    if decision is not None and decision["skipped"]:
        verdict = ("timed_out" if decision["reason"] == "timeout"
                   else f"skipped:{decision['reason']}")
    else:
        verdict = {"detect": "detected", "not_detected": "not_detected"}.get(
            scan_state or "", "timed_out" if scan_state == "response_timeout" else "pending")
    action = None if decision is None else (
        ("tagged" if decision["tag"] else "delivered") if decision["action"] == "deliver"
        else {"delete": "deleted", "reject": "rejected"}[decision["action"]])
    status = {"delivered": "delivered", "discarded": "discarded", "ndr_sent": "rejected",
              "ndr_suppressed": "rejected", "delivery_failed": "bounced"}.get(
        outcome or "", "deferred" if delivery and delivery[0] == "delivery.deferred"
        else "pending")
    return {
        "received_at": received_at, "envelope_from": received.get("envelope_from"),
        "recipients": received.get("envelope_to", []), "subject": received.get("subject"),
        "size": received.get("size"), "client_ip": received.get("client_ip"),
        "verdict": verdict, "detects": detects, "action": action, "status": status,
        "last_reply": None if delivery is None else delivery[1]["reply"],
        "next_attempt_at": delivery[1]["retry_at"] if status == "deferred" and delivery
        else None,
        "backup": None if retained is None and removed is None else {
            "state": "removed" if removed else "held",
            "cause": None if removed is None else removed["cause"],
            "stored_at": None if retained is None else retained["stored_at"],
            "expires_at": None if retained is None else retained["expires_at"]},
    }


def test_summaries_equal_the_timeline_folded_in_order_whatever_the_reading_order() -> None:
    # Given every scenario, the administrator's tools' too, read in several interleavings
    routed = all_flows(len(ALL_SCENARIOS) * 2, ALL_SCENARIOS)
    by_id = {str(e.event_id): e for _t, e in routed}
    for seed in range(4):
        views = folded(interleave(routed, seed))
        for message_id in views.message_ids():
            # Then each message's summary is the in-order fold of its timeline
            doc = views.message(message_id)
            assert doc is not None
            events = doc.pop("events")
            assert doc == reference_summary(message_id, events, by_id), message_id
            assert views.summary(message_id) == doc


def test_a_verdict_after_a_response_timeout_is_the_verdict_shown() -> None:
    # Given a timed-out message whose verdict then came (late), and one verdict stamped
    # before the timeout
    flow = [e for _t, e in message_flow(3, "timeout")]
    timed_out = next(e for e in flow if e.type == "scan.timed_out")
    verdict = next(e for _t, e in message_flow(3, "clean") if e.type == "scan.verdict")
    before = verdict.model_copy(update={"occurred_at": timed_out.occurred_at - timedelta(1)})
    # When folded with the timeout read first, then the earlier-stamped verdict
    views = folded([*flow, before])
    summary = views.summary("MSG00000003")
    # Then the verdict from KATA stands over the response timeout, and the message shows
    # as timed out: it was decided without a verdict
    assert summary is not None
    assert summary["scan_state"] == "not_detected"
    assert summary["verdict"] == "timed_out"


def test_terminal_outcomes_are_named_once() -> None:
    outcomes = [terminal_outcome(e) for _t, e in all_flows(len(SCENARIOS))]
    assert {o for o in outcomes if o} == {"delivered", "discarded", "ndr_sent",
                                          "delivery_failed"}


# -- every view: arrival order and duplicates do not matter -----------------------------

def test_every_view_is_the_same_whatever_the_interleaving_of_partitions() -> None:
    # Given the same records merged in different orders (per-partition order kept)
    routed = all_flows(len(ALL_SCENARIOS) * 3, ALL_SCENARIOS)
    expected = rendered(fold_all(routed))
    for seed in range(5):
        # When folded in that order
        views = reduce(evolve, interleave(routed, seed), Projections())
        # Then every view renders the same bytes
        assert rendered(views) == expected


def test_only_ledger_copies_still_unmatched_are_remembered() -> None:
    # Given every record read once, in any interleaving
    routed = all_flows(12)
    for seed in range(3):
        views = reduce(evolve, interleave(routed, seed), Projections())
        # Then no ledger event id is kept: memory does not grow with the log
        assert views.copies.waiting == set()
    # And a log cut between the two copies keeps only the copies still unread
    ledger = [e for t, e in routed if t == "quarantine"]
    views = reduce(evolve, ledger, Projections())
    assert views.copies.waiting == {e.event_id.int for e in ledger}


def test_second_copies_dropped_by_their_bytes_before_decoding_fold_the_same_views() -> None:
    # Given every record read once, in any interleaving, as the replay reads them: a record
    # equal to a kept first copy is dropped undecoded
    routed = all_flows(len(ALL_SCENARIOS) * 2, ALL_SCENARIOS)
    expected = rendered(fold_all(routed))
    for seed in range(3):
        views = Projections(copies=LedgerCopies(keep_records=True))
        dropped = 0
        for event in interleave(routed, seed):
            record = encode_event(event)
            if views.copies.second(record):
                dropped += 1
                continue
            evolve(views, decode_event(record), record)
        # Then every second copy was dropped so, and the views are the same bytes
        assert dropped == sum(t == "quarantine" for t, _e in routed)
        assert rendered(views) == expected
        # And nothing is kept once both copies were read
        assert views.copies.waiting == set()
        assert not views.copies.second(encode_event(routed[-1][1]))


def test_the_quarantine_lists_the_messages_waiting_for_a_verdict_in_pages() -> None:
    # Given three messages admitted and not yet released, and one done
    routed = [pair for i in (1, 5, 7) for pair in message_flow(i, "timeout")[:4]]
    routed += message_flow(2, "clean")
    views = folded(first_copies([e for _t, e in routed]))
    # When listed the old way (no sort, order or cursor)
    page = views.search(parse("limit=2", "quarantine"), "quarantine")
    # Then they are listed in message id order, a page at a time, `next` a message id
    assert [w["message_id"] for w in page["messages"]] == ["MSG00000001", "MSG00000005"]
    assert page["next"] == "MSG00000005"
    first = page["messages"][0]
    assert first["deadline_at"] > first["admitted_at"]
    assert (first["size"], first["rule_id"]) == (1001, "inbound-finance")
    assert first["envelope_from"] == "user1@supplier.example.net"
    rest = views.search(parse("limit=2&after=MSG00000005", "quarantine"), "quarantine")
    assert [w["message_id"] for w in rest["messages"]] == ["MSG00000007"]
    assert rest["next"] is None
