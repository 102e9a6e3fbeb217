"""The Backup's and the delivery queue's administrator requests, without a broker: what the
event carries, and each refusal naming its field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from katagate.admin.backup import delete_request, refuse_unless_held, resend_request
from katagate.admin.delivery_queue import queue_action, refuse_unless_queued
from katagate.admin.errors import InvalidCommand

NOW = datetime(2026, 12, 3, 8, tzinfo=UTC)
SHA = "ab" * 32


def copy_row(**changes: Any) -> dict[str, Any]:
    """A row of GET /backup/copies/{id} (docs: the contract of issue 20)."""
    row: dict[str, Any] = {
        "message_id": "MSG00000001", "envelope_from": "partner@example.org",
        "recipients": ["a@example.net", "b@example.net"], "subject": "invoice",
        "backup": {"state": "held", "cause": None, "stored_at": "2026-12-01T00:00:00Z",
                   "expires_at": "2026-12-31T00:00:00Z"},
        "location": {"topic": "katagate.backup", "partition": 2, "offsets": [7, 8],
                     "chunk_bytes": 1048576},
        "sha256": SHA, "removed": None, "resends": [],
    }
    return {**row, **changes}


def test_given_a_held_copy_when_resent_without_addresses_then_it_goes_to_the_original_recipients():
    event = resend_request(copy_row(), "cli:ops", "false positive", None, NOW)
    assert event.recipients == ["a@example.net", "b@example.net"]
    assert event.to_original is True
    assert (event.actor, event.comment, event.envelope_from) == (
        "cli:ops", "false positive", "partner@example.org")
    # Where the copy lies and its digest come with the request: apply needs nothing else.
    assert (event.location.partition, event.location.offsets, event.sha256) == (2, [7, 8], SHA)
    assert event.producer.instance == "cli:ops"


def test_given_addresses_when_resent_then_they_replace_the_recipients_once_each():
    event = resend_request(copy_row(), "cli:ops", "", ["x@example.com", "X@Example.com",
                                                      "y@sub.example.com"], NOW)
    assert event.recipients == ["x@example.com", "y@sub.example.com"]
    assert event.to_original is False


def test_given_the_null_sender_then_the_resend_keeps_it_null():
    assert resend_request(copy_row(envelope_from="<>"), "cli:ops", "", None,
                          NOW).envelope_from == ""


@pytest.mark.parametrize("to", [
    [], ["not-an-address"], ["a@b"], ["a b@example.com"], ["<a@example.com>"],
    ["a@example.com\r\nRCPT TO:<evil@x.example>"], ["a@-bad.example"], ["@example.com"],
    [f"{'a' * 65}@example.com"], [f"u{i}@example.com" for i in range(101)],
])
def test_given_bad_addresses_when_resent_then_refused_naming_to(to):
    with pytest.raises(InvalidCommand, match=r"^to: ") as refused:
        resend_request(copy_row(), "cli:ops", "", to, NOW)
    assert refused.value.field == "to"
    assert refused.value.allowed


@pytest.mark.parametrize(("row", "why"), [
    (copy_row(backup={"state": "removed", "cause": "expired_age"}), "removed .expired_age."),
    (copy_row(backup=None), "has no copy there"),
    (copy_row(removed={"cause": "deleted_by_admin", "actor": "cli:x", "at": "…"}), ""),
])
def test_given_a_copy_not_held_when_resent_then_refused_naming_the_message(row, why):
    with pytest.raises(InvalidCommand, match=rf"^message_id: MSG00000001 is not held.*{why}"):
        resend_request(row, "cli:ops", "", None, NOW)
    with pytest.raises(InvalidCommand, match=r"^message_id: "):
        refuse_unless_held(row)


@pytest.mark.parametrize("broken", [{"sha256": "nothex"}, {"location": {"topic": "t"}},
                                    {"recipients": []}, {"envelope_from": None}])
def test_given_a_row_without_the_copys_facts_then_no_resend_is_built(broken):
    with pytest.raises(InvalidCommand, match=r"^message_id: the Backup row"):
        resend_request(copy_row(**broken), "cli:ops", "", None, NOW)


def test_a_deletion_records_who_and_why_and_refuses_a_bad_id_or_comment():
    event = delete_request("MSG00000001", "cli:ops", "done", NOW)
    assert (event.type, event.actor, event.comment) == ("backup.delete_requested", "cli:ops",
                                                       "done")
    with pytest.raises(InvalidCommand, match=r"^message_id: expected 8-64"):
        delete_request("../etc", "cli:ops", "", NOW)
    with pytest.raises(InvalidCommand, match=r"^comment: at most 1000"):
        delete_request("MSG00000001", "cli:ops", "x" * 1001, NOW)
    with pytest.raises(InvalidCommand, match=r"^actor: "):
        delete_request("MSG00000001", "cli:\nops", "", NOW)


@pytest.mark.parametrize("action", ["retry", "bounce", "delete"])
def test_each_queue_action_becomes_its_request(action):
    event = queue_action("MSG00000001", action, "cli:ops", "next hop is back", NOW)
    assert (event.type, event.action, event.actor) == ("queue.action_requested", action,
                                                       "cli:ops")


def test_an_unknown_queue_action_is_refused_with_the_allowed_ones():
    with pytest.raises(InvalidCommand, match=r"^action: must be one of retry, bounce, delete"
                       ) as refused:
        queue_action("MSG00000001", "flush", "cli:ops", "", NOW)
    assert refused.value.allowed == ["retry", "bounce", "delete"]


@pytest.mark.parametrize(("row", "said"), [
    (None, "it is not in the delivery queue"),
    ({"message_id": "MSG00000001", "status": "delivered"}, "its status is delivered"),
])
def test_given_a_message_not_deferred_then_a_queue_action_is_refused(row, said):
    with pytest.raises(InvalidCommand, match=f"^message_id: MSG00000001 is not waiting.*{said}"):
        refuse_unless_queued(row, "MSG00000001")
    refuse_unless_queued({"message_id": "MSG00000001", "status": "deferred"})
