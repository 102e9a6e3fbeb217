"""The projector's folds, Given / When / Then: connection state, quarantine usage, counters,
timelines — idempotent under the mirrored ledger events, and independent of how the topics
interleave on arrival."""

from __future__ import annotations

import random
from functools import reduce
from ipaddress import IPv4Address

from projector import connection, counters, quarantine, timelines
from projector.canonical import document
from projector.connection import ConnectionView
from projector.counters import Counters
from projector.quarantine import QuarantineView
from projector.timelines import MemoryTimelines
from projector.views import Projections, apply
from schemas import CentralNodeObserved, Event, NodeAddress
from tests.unit.fixtures.events import FINGERPRINT, NODE_FINGERPRINT, SENSOR_ID
from tests.unit.test_projector_flows import (
    SCENARIOS,
    Routed,
    all_flows,
    control_flow,
    message_flow,
)


def fold_all(routed: Routed) -> Projections:
    return reduce(apply, (e for _t, e in routed), Projections())


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


# -- connection state ---------------------------------------------------------------------

def test_connection_window_shows_address_state_and_both_fingerprints() -> None:
    # Given settings, our key, the connection confirmed and KATA's key pinned
    view = reduce(connection.apply, (e for _t, e in control_flow()), ConnectionView())
    # Then the window shows what the product's "KATA connection state" window shows
    window = connection.render(view)
    assert window["central_node_address"] == "10.20.30.40"
    assert window["central_node_port"] == 443
    assert window["connection_state"] == "connected"
    assert window["previous_state"] == "awaiting_confirmation"
    assert window["since"] == "2025-03-14T09:23:53.000000Z"
    assert window["ksmg_public_key_fingerprint"] == FINGERPRINT
    assert window["sensor_id"] == SENSOR_ID
    assert window["kata_public_key_fingerprint"] == NODE_FINGERPRINT
    assert window["kata_public_key_pinned"] == NODE_FINGERPRINT
    assert window["kata_public_key_matches_pin"] is True
    assert window["kata_protection_enabled"] is True


def test_connection_keeps_the_last_error_after_recovery() -> None:
    # Given a connection that became unreachable
    events = [e for _t, e in control_flow()]
    down = events[4].model_copy(update={"state": "unreachable", "previous": "connected",
                                        "detail": "connection refused"})
    up = events[4].model_copy(update={"occurred_at": events[4].occurred_at.replace(hour=10)})
    # When it recovers
    view = reduce(connection.apply, [*events, down, up], ConnectionView())
    # Then the state is connected and the last error is still on record
    window = connection.render(view)
    assert window["connection_state"] == "connected"
    assert window["detail"] == ""
    assert window["last_error"] == {"state": "unreachable", "detail": "connection refused",
                                    "at": "2025-03-14T09:23:53.000000Z"}


def test_a_pin_for_another_central_node_does_not_apply() -> None:
    # Given KATA's key pinned for 10.20.30.40, then a key observed unpinned at another node
    events = [e for _t, e in control_flow()]
    other = NodeAddress(address=IPv4Address("10.9.9.9"), port=443)
    observed = CentralNodeObserved.model_validate({**events[5].model_dump(),
                                                   "central_node": other, "pinned": False,
                                                   "fingerprint": FINGERPRINT})
    changed = events[0].model_copy(update={"settings": events[0].settings.model_copy(
        update={"central_node_address": IPv4Address("10.9.9.9")})})
    # When the settings move to that node
    window = connection.render(reduce(connection.apply, [*events, observed, changed],
                                      ConnectionView()))
    # Then no pin applies, and the observed key is the new one
    assert window["central_node_address"] == "10.9.9.9"
    assert window["kata_public_key_pinned"] is None
    assert window["kata_public_key_fingerprint"] == FINGERPRINT
    assert window["kata_public_key_matches_pin"] is False


def test_a_fresh_view_is_not_configured() -> None:
    window = connection.render(ConnectionView())
    assert window["connection_state"] == "not_configured"
    assert window["since"] is None
    assert window["central_node_address"] is None


# -- quarantine usage --------------------------------------------------------------------

def test_quarantine_counts_a_mirrored_admission_once() -> None:
    # Given a message admitted (the ledger event and its mirror on the message)
    flow = message_flow(1, "clean")[:4]  # received, admitted, mirror, submitted
    # When both copies are folded
    view = reduce(quarantine.apply, (e for _t, e in flow), QuarantineView())
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
    view = reduce(quarantine.apply, [*ledger, *mirrors], QuarantineView())
    # Then the message is not held again
    usage = quarantine.render(view)
    assert (usage["bytes_in_use"], usage["messages_in_use"]) == (0, 0)
    assert usage["released_total"] == 1


def test_quarantine_limits_follow_the_settings_and_usage_the_held_messages() -> None:
    # Given settings with a 100-message limit, and messages in flight
    routed = control_flow() + [pair for i in range(6) for pair in message_flow(i)[:4]]
    view = reduce(quarantine.apply, (e for _t, e in routed), QuarantineView())
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
    view = reduce(counters.apply, (e for _t, e in all_flows(12)), Counters())
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


# -- timelines ---------------------------------------------------------------------------

def test_a_timeline_holds_each_event_once_in_lifecycle_order() -> None:
    # Given a rejected message, the ledger copies read before the mail partition
    flow = message_flow(2, "rejected")
    ledger_first = [e for t, e in flow if t == "quarantine"] + [e for t, e in flow
                                                                if t == "mail"]
    # When folded
    store = reduce(timelines.apply, ledger_first, MemoryTimelines())
    # Then the timeline is in lifecycle order, each event once
    doc = timelines.render(store, "MSG00000002")
    assert doc is not None
    assert [e["type"] for e in doc["events"]] == [
        "mail.received", "quarantine.admitted", "scan.submitted", "scan.verdict",
        "action.decided", "quarantine.released", "ndr.sent"]
    assert doc["decision"] == {"action": "reject", "reason": "detected", "skipped": False,
                               "tag": None, "backup": False}
    assert doc["outcome"] == "ndr_sent"
    assert doc["verdict"] == "detect"
    assert doc["quarantine"] == {"admitted": True, "reason": None}
    first = doc["events"][0]
    assert first["producer"] == "ingest/ingest-0"
    assert first["fields"]["size"] == 1002
    assert "raw" not in first["fields"]


def test_an_ndr_after_a_failed_delivery_is_not_the_outcome() -> None:
    store = reduce(timelines.apply, (e for _t, e in message_flow(5, "error")),
                   MemoryTimelines())
    doc = timelines.render(store, "MSG00000005")
    assert doc is not None
    assert doc["outcome"] == "delivery_failed"
    assert doc["decision"]["skipped"] is True


def test_unknown_message_has_no_timeline_and_ids_page_in_order() -> None:
    store = reduce(timelines.apply, (e for _t, e in all_flows(5)), MemoryTimelines())
    assert timelines.render(store, "MSG99999999") is None
    assert list(store.message_ids()) == [f"MSG{i:08d}" for i in range(5)]
    assert list(store.message_ids(after="MSG00000002")) == ["MSG00000003", "MSG00000004"]


# -- every view: arrival order and duplicates do not matter -----------------------------

def test_every_view_is_the_same_whatever_the_interleaving_of_partitions() -> None:
    # Given the same records merged in different orders (per-partition order kept)
    routed = all_flows(len(SCENARIOS) * 3)
    expected = rendered(fold_all(routed))
    for seed in range(5):
        # When folded in that order
        views = reduce(apply, interleave(routed, seed), Projections())
        # Then every view renders the same bytes
        assert rendered(views) == expected


def test_refolding_the_ledger_changes_nothing() -> None:
    routed = all_flows(12)
    views = fold_all(routed)
    before = rendered(views)
    for topic, event in routed:
        if topic == "quarantine":
            apply(views, event)
    assert rendered(views) == before
