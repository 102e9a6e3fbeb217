"""The accounting, from events alone: every accepted message with exactly one terminal event,
and for the others why not and until when."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import audit
from katagate.audit.reconcile import Reconciler, Window
from tests.unit.test_projector_flows import SCENARIOS, all_flows, message_flow

LATER = datetime(2030, 1, 1, tzinfo=UTC)


def fold(routed, reconciler: Reconciler | None = None) -> Reconciler:
    reconciler = reconciler or Reconciler()
    for topic, event in routed:
        if topic == "quarantine":
            reconciler.add_ledger(event)
        else:
            reconciler.add_mail(event)
    return reconciler


def test_every_finished_flow_balances_with_one_terminal_each() -> None:
    report = fold(all_flows(len(SCENARIOS) * 2)).report(LATER)
    assert report["accepted"] == 12
    assert report["terminal_exactly_once"] == 12
    assert report["without_terminal"] == []
    assert report["duplicate_terminals"] == {}
    assert report["quarantine_held"] == []
    assert report["balanced"] is True


def test_a_message_still_scanning_says_what_it_waits_for_and_until_when() -> None:
    # Given a message admitted and submitted, with no verdict yet
    flow = [pair for pair in message_flow(4, "timeout") if pair[1].type in (
        "mail.received", "quarantine.admitted", "scan.submitted")]
    report = fold(flow).report(flow[0][1].occurred_at + timedelta(seconds=1))
    # Then it waits for the verdict until its deadline, and holds a slot
    (waiting,) = report["without_terminal"]
    assert waiting["state"] == "waiting_for_verdict"
    admitted = next(e for _t, e in flow if e.type == "quarantine.admitted")
    assert waiting["until"] == admitted.deadline_at.isoformat()
    assert waiting["overdue"] is False
    assert [h["message_id"] for h in report["quarantine_held"]] == ["MSG00000004"]
    # And past the deadline, both say overdue
    late = fold(flow).report(LATER)
    assert late["without_terminal"][0]["overdue"] is True
    assert late["quarantine_held"][0]["overdue"] is True
    assert late["balanced"] is True  # unsettled is not unbalanced


def test_a_second_terminal_event_is_a_duplicate_and_unbalances() -> None:
    flow = message_flow(0, "clean")
    delivered = next(pair for pair in flow if pair[1].type == "delivery.delivered")
    again = (delivered[0], delivered[1].model_copy(update={"attempts": 2}))
    report = fold([*flow, again]).report(LATER)
    assert report["duplicate_terminals"] == {"MSG00000000": ["delivered", "delivered"]}
    assert report["balanced"] is False


def test_a_terminal_event_for_a_message_never_accepted_unbalances() -> None:
    flow = [pair for pair in message_flow(0, "clean") if pair[1].type != "mail.received"]
    report = fold(flow).report(LATER)
    assert report["terminal_without_received"] == ["MSG00000000"]
    assert report["accepted"] == 0
    assert report["balanced"] is False


def test_the_window_selects_messages_by_their_acceptance() -> None:
    routed = all_flows(4)
    received = sorted(e.occurred_at for _t, e in routed if e.type == "mail.received")
    report = fold(routed).report(LATER, Window(since=received[1], until=received[2]))
    assert report["accepted"] == 2


def test_the_same_content_and_envelope_under_two_ids_is_a_possible_resend() -> None:
    first = message_flow(0, "clean")
    received = first[0][1]
    resent = ("mail", received.model_copy(update={"message_id": "MSG00000099"}))
    report = fold([*first, resent]).report(LATER)
    assert report["possible_resends"] == [["MSG00000000", "MSG00000099"]]
    assert report["without_terminal"][0]["state"] == "waiting_for_admission"


def test_the_audit_reads_the_log_without_the_projector() -> None:
    """The auditor's tools stand on the log (eventlog, schemas), not on a view of it."""
    for path in Path(audit.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names]
        imported += [node.module or "" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom)]
        assert not [name for name in imported if name.split(".")[0] == "projector"], path.name


def test_a_delivered_notice_is_no_orphan_terminal() -> None:
    # Given a notice composed (its own id, no mail.received) and delivered
    import uuid

    from katagate.schemas import MessageDelivered, NotificationComposed, ProducerRef

    ref, notice_id = ProducerRef(stage="decider", instance="d"), "ab" * 16
    envelope = {"occurred_at": LATER, "producer": ref, "message_id": notice_id}
    composed = NotificationComposed(**envelope, event_id=uuid.uuid4(), kind="detect",
                                    audience="administrators", to=["soc@example.net"],
                                    data="Subject: x\r\n\r\nx\r\n")
    delivered = MessageDelivered(**envelope, event_id=uuid.uuid4(), next_hop="127.0.0.1:25",
                                 recipients=["soc@example.net"], reply="250 ok", tagged=False,
                                 attempts=1)
    report = fold([("mail", composed), ("mail", delivered)]).report(LATER)
    # Then the accounting counts it as a notice, not as a terminal event without a message
    assert (report["terminal_without_received"], report["notices"]) == ([], 1)
    assert report["balanced"] is True
