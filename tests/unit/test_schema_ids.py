"""Ids and orders derived from the event union stay what the log was written with. Event ids
derived from (message, step) are the ids already in the log: given the same
message and step, each part's namespace gives what the code gave before it shared one
function. A change here would make a step redone after an upgrade write a second event."""

from __future__ import annotations

import uuid

from katagate.schemas.ids import DECISIONS, EFFECTS, LEDGER, SCANS, step_id


def test_given_a_message_and_a_step_then_each_part_derives_its_published_id():
    assert str(step_id(LEDGER, "M1", "admission")) == "1e64aabb-1aaf-5348-9349-8057433466b4"
    assert str(step_id(EFFECTS, "M1", "delivered")) == "dd3fce3d-2af8-5920-99de-d11a3152f987"
    assert str(step_id(DECISIONS, "M1", "decided")) == "f6c6b5a4-d9c3-5dd1-9df2-3d12cf39fc10"
    assert str(step_id(SCANS, "M1", "verdict")) == "a460f7a3-df70-5a69-9489-e5d0d3889e05"


def test_given_two_parts_then_the_same_step_never_gets_the_same_id():
    ids = {step_id(namespace, "M1", "step") for namespace in (LEDGER, EFFECTS, DECISIONS, SCANS)}
    assert len(ids) == 4
    assert all(isinstance(i, uuid.UUID) for i in ids)


def test_given_the_union_then_the_lifecycle_order_is_the_one_timelines_were_ordered_by():
    from katagate.schemas import MAIL_LIFECYCLE

    first_release = (
        "mail.received", "quarantine.admitted", "quarantine.denied", "scan.submitted",
        "scan.failed", "scan.verdict", "scan.timed_out", "quarantine.forced_release",
        "quarantine.forced_delete", "action.decided", "quarantine.released", "backup.stored",
        "delivery.deferred", "delivery.delivered", "delivery.failed", "message.discarded",
        "ndr.sent", "ndr.suppressed", "scan.late_verdict")
    assert MAIL_LIFECYCLE == (
        "mail.received", "quarantine.admitted", "quarantine.denied", "scan.submitted",
        "scan.failed", "scan.verdict", "scan.timed_out", "quarantine.forced_release",
        "quarantine.forced_delete", "action.decided", "quarantine.released", "backup.stored",
        "backup.retained", "delivery.deferred", "queue.action_requested", "delivery.delivered",
        "delivery.failed", "message.discarded", "ndr.sent", "ndr.suppressed",
        "scan.late_verdict", "backup.resend_requested", "backup.resent",
        "backup.delete_requested", "backup.removed", "quarantine.held",
        "quarantine.hold_ended", "notification.held", "notification.composed")
    # Types added later are placed between the earlier ones, never reorder them: a timeline
    # of the first release's events keeps its order.
    assert tuple(t for t in MAIL_LIFECYCLE if t in first_release) == first_release
