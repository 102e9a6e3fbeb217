"""What the mail pages show (Tracking, a timeline, KATA Quarantine, Backup) from the
projector's documents, the filters' names the console passes on, and Send now / Delete on a
selection decided all or none (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from katagate.admin.errors import InvalidCommand, NotFound
from katagate.admin.quarantine import selection
from katagate.console import filters
from katagate.console.backup_copies import chunks_for
from katagate.console.mail_pages import backup_copy_page, search_form, timeline_page, verdict_label
from katagate.console.problems import ProblemError
from katagate.schemas import ForcedDelete, ForcedRelease
from katagate.schemas.types import RawLocation

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def test_the_filters_are_passed_on_by_name_and_blank_ones_left_out():
    given = [("from", " a@example.org "), ("to", ""), ("verdict", "skipped:size_limit"),
             ("limit", "20")]
    assert filters.projector_query(given) == {"from": "a@example.org",
                                              "verdict": "skipped:size_limit", "limit": "20"}
    assert filters.projector_query([("sort", "size")], filters.QUARANTINE_EXTRA) == {
        "sort": "size"}


@pytest.mark.parametrize(("given", "field"), [
    ([("sender", "a@example.org")], "sender"),  # a misspelt filter is not ignored
    ([("sort", "size")], "sort"),  # the quarantine's, not the search's
    ([("from", "a@x.org"), ("from", "b@x.org")], "from"),
])
def test_an_unknown_or_repeated_filter_is_refused_naming_it(given, field):
    with pytest.raises(ProblemError) as refused:
        filters.projector_query(given)
    assert (refused.value.problem.status, refused.value.problem.field) == (400, field)
    if field != "from":
        assert "verdict" in refused.value.problem.allowed


def test_a_message_id_is_checked_before_it_reaches_a_projector_path():
    assert filters.checked_id("01ABCDEF0123") == "01ABCDEF0123"
    for bad in ("../state/quarantine", "short", "01ABCDEF0123?x=1"):
        with pytest.raises(ProblemError) as refused:
            filters.checked_id(bad)
        assert refused.value.problem.field == "message_id"


def test_each_search_form_has_the_common_filters_and_its_own():
    assert [f.name for f in search_form("tracking")] == list(filters.FILTERS)
    verdicts = dict(next(f for f in search_form("tracking") if f.name == "verdict").choices)
    assert {"", "detected", "timed_out", "skipped", "skipped:forced_release"} <= set(verdicts)
    assert [f.name for f in search_form("quarantine")][-2:] == ["sort", "order"]
    assert [f.name for f in search_form("backup")][-2:] == ["detect", "state"]
    assert verdict_label("skipped:size_limit") == "Skipped: quarantine full (size)"


TIMELINE = {
    "message_id": "01ABCDEF0123", "received_at": "2026-12-03T08:59:00.000000Z",
    "envelope_from": "", "recipients": ["bob@example.net", "carol@example.net"],
    "subject": "<b>hello</b>", "verdict": "detected",
    "detects": [{"type": "file", "name": "EICAR-Test-File"}], "action": "deleted",
    "status": "discarded", "rule_id": None,
    "events": [
        {"type": "mail.received", "event_id": "e1", "occurred_at": "2026-12-03T08:59:00Z",
         "producer": "ingest/ingest-0",
         "fields": {"envelope_from": "", "recipients": ["bob@example.net"], "size": 233,
                    "comment": None}},
        {"type": "action.decided", "event_id": "e2", "occurred_at": "2026-12-03T08:59:05Z",
         "producer": "decider/decider-0",
         "fields": {"action": "delete", "reason": "detected", "note": "x" * 400}},
    ],
}


def test_a_timeline_shows_every_event_its_time_its_producer_and_its_fields():
    page = timeline_page(TIMELINE)
    summary = dict(page.summary)
    assert summary["Sender"] == "<>"  # the null sender, named
    assert summary["Recipients"] == "bob@example.net, carol@example.net"
    assert summary["KATA verdict"] == "Detected"
    assert summary["Detects"] == "EICAR-Test-File (file)"
    assert "Rule" not in summary  # no value: not shown
    assert [(e.at, e.type, e.producer) for e in page.entries] == [
        ("2026-12-03T08:59:00Z", "mail.received", "ingest/ingest-0"),
        ("2026-12-03T08:59:05Z", "action.decided", "decider/decider-0")]
    received = dict(page.entries[0].fields)
    assert received == {"recipients": '["bob@example.net"]', "size": "233"}
    note = dict(page.entries[1].fields)["note"]
    assert len(note) == 300
    assert note.endswith("…")


COPY = {"message_id": "01ABCDEF0123", "envelope_from": "alice@example.org",
        "recipients": ["bob@example.net"], "subject": "invoice", "size": 900,
        "detects": [{"type": "file", "name": "EICAR-Test-File"}],
        "backup": {"state": "held", "cause": None}, "stored_at": "2026-12-03T09:00:00Z",
        "expires_at": "2027-01-02T09:00:00Z", "removed": None,
        "resends": [{"actor": "admin", "at": "2026-12-03T09:05:00Z",
                     "to": ["helpdesk@example.net"], "outcome": "delivered",
                     "reply": "250 ok"}]}
VIEW = {"headers": [{"name": "Subject", "value": "invoice"}],
        "text": "<script>alert(1)</script>", "attachments": [
            {"filename": "", "content_type": "application/octet-stream", "size": 68}],
        "truncated": False}


def test_a_held_copy_shows_its_facts_headers_text_and_resends():
    page = backup_copy_page(COPY, VIEW)
    assert page.held
    assert dict(page.summary)["Kept until"] == "2027-01-02T09:00:00Z"
    assert dict(page.summary)["Copy"] == "Held"
    assert page.headers == (("Subject", "invoice"),)
    assert page.text == "<script>alert(1)</script>"  # text; the template escapes it
    assert page.attachments == (("(no name)", "application/octet-stream", "68"),)
    assert page.resends == (("2026-12-03T09:05:00Z", "admin", "helpdesk@example.net",
                             "delivered", "250 ok"),)
    assert page.original_recipients == "bob@example.net"


def test_a_removed_copy_says_how_and_has_no_content():
    removed = {**COPY, "backup": {"state": "removed", "cause": "deleted_by_admin"},
               "removed": {"cause": "deleted_by_admin", "actor": "admin",
                           "at": "2026-12-03T10:00:00Z"}, "resends": []}
    page = backup_copy_page(removed, None)
    assert not page.held
    assert dict(page.summary)["Copy"] == ("Removed: deleted_by_admin by admin at "
                                          "2026-12-03T10:00:00Z")
    assert (page.headers, page.text) == ((), "")


def test_a_copys_page_reads_only_the_chunks_its_view_shows():
    location = RawLocation(topic="t", partition=0, offsets=[3, 5, 7, 9], chunk_bytes=100)
    assert chunks_for(location, None) == [3, 5, 7, 9]
    assert chunks_for(location, 150) == [3, 5]  # 200 bytes: more than shown, so cut is seen
    assert chunks_for(location, 1000) == [3, 5, 7, 9]


WAITING = ["AAAAAAAA0001", "AAAAAAAA0002"]


def test_send_now_on_a_selection_is_one_event_per_message_each_once():
    events = selection("send-now", ["AAAAAAAA0001", "AAAAAAAA0002", "AAAAAAAA0001"], "admin",
                       "partner mail", NOW, lambda: WAITING)
    assert [type(e) for e in events] == [ForcedRelease, ForcedRelease]
    assert [(e.message_id, e.actor, e.comment) for e in events] == [  # type: ignore[union-attr]
        ("AAAAAAAA0001", "admin", "partner mail"), ("AAAAAAAA0002", "admin", "partner mail")]
    (deleted,) = selection("delete", ["AAAAAAAA0002"], "admin", "", NOW, lambda: WAITING)
    assert isinstance(deleted, ForcedDelete)


def test_a_selection_with_one_message_not_waiting_is_refused_whole_naming_it():
    with pytest.raises(NotFound) as refused:
        selection("delete", ["AAAAAAAA0001", "BBBBBBBB0009", "CCCCCCCC0009"], "admin", "",
                  NOW, lambda: WAITING)
    assert refused.value.field == "message_ids"
    assert "BBBBBBBB0009, CCCCCCCC0009" in str(refused.value)
    assert "AAAAAAAA0001" not in str(refused.value)


def never_asked() -> list[str]:
    raise AssertionError("a malformed request must not reach the projector")


@pytest.mark.parametrize(("action", "ids", "comment", "field"), [
    ("release", ["AAAAAAAA0001"], "", "action"),
    ("delete", [], "", "message_ids"),
    ("delete", [f"AAAAAAAA{i:04}" for i in range(1001)], "", "message_ids"),
    ("delete", ["AAAAAAAA0001", "../x"], "", "message_ids"),
    ("delete", ["AAAAAAAA0001"], "x" * 1001, "comment"),
])
def test_a_malformed_selection_is_refused_naming_the_field_before_asking_the_projector(
        action, ids, comment, field):
    with pytest.raises(InvalidCommand) as refused:
        selection(action, ids, "admin", comment, NOW, never_asked)
    assert refused.value.field == field
