"""The projector's search, Given / When / Then: the filters validated (pure), and every
listing over a real SQLite store equal to filtering every row by hand, page by page."""

from __future__ import annotations

import random
import re
from functools import reduce
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from katagate.projector import backup_usage, store
from katagate.projector.backup_usage import BackupUsage
from katagate.projector.canonical import micros
from katagate.projector.copies import LedgerCopies
from katagate.projector.search import driver
from katagate.projector.search_filters import VERDICTS, FilterError, Search, encode_cursor, parse
from katagate.projector.store import SearchTooSlow, TimelineStore
from katagate.projector.views import Projections, evolve
from katagate.schemas import BackupLedgerEvent, Event
from tests.unit.fixtures.events import T0
from tests.unit.test_projector_flows import ALL_SCENARIOS, Routed, all_flows, message_flow

# -- the filters ---------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "listing", "parameter"), [
    ("verdict=clean", "search", "verdict"), ("verdict=skipped:timeout", "search", "verdict"),
    ("action=deliver", "search", "action"), ("status=queued", "search", "status"),
    ("from=not-an-address", "search", "from"), ("to=*@", "search", "to"),
    ("subject=%20!!", "search", "subject"), ("client=10.0.0.300", "search", "client"),
    ("since=2026-01-01T00:00:00", "search", "since"), ("until=yesterday", "search", "until"),
    ("limit=0", "search", "limit"), ("limit=1001", "search", "limit"),
    ("order=newest", "search", "order"), ("cursor=abc", "search", "cursor"),
    ("sort=size", "search", "sort"), ("sort=colour", "quarantine", "sort"),
    ("state=gone", "backup", "state"), ("detect=", "backup", "detect"),
    ("after=MSG00000001&order=asc", "quarantine", "after"), ("colour=red", "queue", "colour"),
    ("from=a@b.c&from=d@e.f", "search", "from"),
    # Digits Python's int() reads but a limit is not; a value with a line end after it
    ("limit=%C2%B2", "search", "limit"), ("limit=%D9%A3", "search", "limit"),
    ("from=a@b.c%0A", "search", "from"), ("to=*@b.c%0A", "search", "to"),
    ("after=MSG00000001%0A", "quarantine", "after"),
])
def test_a_bad_filter_is_refused_naming_the_parameter_and_what_it_allows(
        query: str, listing: str, parameter: str) -> None:
    # When a listing is asked with a bad or unknown value
    with pytest.raises(FilterError) as caught:
        parse(query, listing)
    # Then the answer names the parameter and what it takes
    assert caught.value.body["parameter"] == parameter
    assert caught.value.body["allowed"]
    assert repr(parameter) in caught.value.body["error"]


def test_the_allowed_values_are_listed_for_the_choices() -> None:
    with pytest.raises(FilterError) as caught:
        parse("verdict=clean", "search")
    assert caught.value.body["allowed"] == list(VERDICTS)
    assert "skipped:size_limit" in VERDICTS


def test_a_good_query_is_read_whole() -> None:
    # Given every filter at once
    asked = parse("from=*@Partner.Example.org&to=Bob@Example.COM&subject=Invoice%2C+march"
                  "&client=2001:db8:0::1&since=2025-03-14T09:00:00%2B01:00"
                  "&until=2025-03-15T00:00:00Z&verdict=skipped:error&action=tagged"
                  "&status=deferred&limit=20&order=asc", "search")
    # Then each is read as the store compares it
    assert asked == Search(sender_domain="partner.example.org", to="bob@example.com",
                           subject=("invoice", "march"), client="2001:db8::1",
                           since=micros(T0.replace(hour=8, minute=0, second=0)),
                           until=micros(T0.replace(day=15, hour=0, minute=0, second=0)),
                           verdict="skipped:error", action="tagged", status="deferred",
                           limit=20, order="asc")
    assert parse("from=%3C%3E", "search").sender == ""
    assert parse("", "quarantine").legacy
    assert not parse("sort=size", "quarantine").legacy


def test_a_cursor_is_for_its_own_sort_and_order() -> None:
    cursor = encode_cursor("size", "asc", 1200, "MSG00000001")
    assert parse(f"sort=size&order=asc&cursor={cursor}", "quarantine").cursor == (
        1200, "MSG00000001")
    with pytest.raises(FilterError) as caught:
        parse(f"sort=size&cursor={cursor}", "quarantine")
    assert caught.value.body["parameter"] == "cursor"
    # A cursor we did not make, with a number past SQLite's 64 bits, is refused here, not
    # by the query (which would be a 500)
    for forged in (2**63, -2**63 - 1, True):
        cursor = encode_cursor("size", "asc", forged, "MSG00000001")
        with pytest.raises(FilterError) as caught:
            parse(f"sort=size&order=asc&cursor={cursor}", "quarantine")
        assert caught.value.body["parameter"] == "cursor"


# -- the store ---------------------------------------------------------------------------

MESSAGES = len(ALL_SCENARIOS) * 4


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> Projections:
    """Every scenario four times, folded into a store on disk and committed."""
    path: Path = tmp_path_factory.mktemp("search") / "search.sqlite"
    folded = reduce(evolve, (e for _t, e in all_flows(MESSAGES, ALL_SCENARIOS)),
                    Projections(store=TimelineStore(path)))
    folded.store.commit()
    return folded


def all_pages(views: Projections, query: str, listing: str = "search") -> list[dict[str, Any]]:
    """Every row, following the cursor three rows at a time."""
    rows: list[dict[str, Any]] = []
    asked = f"{query}&limit=3" if query else "limit=3"
    while True:
        page = views.search(parse(asked, listing), listing)
        rows += page["messages"]
        if page["next"] is None:
            return rows
        asked = f"{query}&limit=3&cursor={page['next']}" if query else (
            f"limit=3&cursor={page['next']}")


def expected(views: Projections, keep: Any, newest_first: bool = True) -> list[str]:
    """By hand: every message's summary, filtered, newest first."""
    summaries = [views.summary(m) for m in views.message_ids()]
    kept = [s for s in summaries if s is not None and keep(s)]
    kept.sort(key=lambda s: (s["received_at"], s["message_id"]), reverse=newest_first)
    return [s["message_id"] for s in kept]


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["message_id"] for r in rows]


USER1 = "user1@supplier.example.net"
SEARCHES: list[tuple[str, Any]] = [
    ("", lambda s: True),
    ("from=user1@supplier.example.net", lambda s: s["envelope_from"] == USER1),
    ("from=USER1@Supplier.Example.NET", lambda s: s["envelope_from"] == USER1),
    ("from=*@example.com", lambda s: s["envelope_from"].endswith("@example.com")),
    ("from=<>", lambda s: s["envelope_from"] == ""),
    ("to=rcpt2@finance.example.com", lambda s: "rcpt2@finance.example.com" in s["recipients"]),
    ("to=all1@staff.example.com", lambda s: "All1@Staff.Example.com" in s["recipients"]),
    ("to=*@staff.example.com", lambda s: True),
    ("to=*@nowhere.example", lambda s: False),
    ("subject=invoice", lambda s: s["subject"].lower().split()[0] in ("invoice", "re:")),
    ("subject=quart", lambda s: s["subject"].startswith("Quarterly")),
    ("subject=invoice+overdue", lambda s: "overdue" in s["subject"]),
    ("client=198.51.100.3", lambda s: s["client_ip"] == "198.51.100.3"),
    ("verdict=detected", lambda s: s["verdict"] == "detected"),
    ("verdict=skipped", lambda s: s["verdict"].startswith("skipped:")),
    ("verdict=skipped:count_limit", lambda s: s["verdict"] == "skipped:count_limit"),
    ("verdict=timed_out", lambda s: s["verdict"] == "timed_out"),
    ("action=tagged", lambda s: s["action"] == "tagged"),
    ("action=deleted", lambda s: s["action"] == "deleted"),
    ("status=bounced", lambda s: s["status"] == "bounced"),
    ("status=deferred", lambda s: s["status"] == "deferred"),
    ("since=2025-03-14T09:35:00Z&until=2025-03-14T09:40:00Z",
     lambda s: "2025-03-14T09:35:00" <= s["received_at"] < "2025-03-14T09:40:00"),
    ("to=*@finance.example.com&verdict=detected&since=2025-03-14T09:30:00Z",
     lambda s: s["verdict"] == "detected" and s["received_at"] >= "2025-03-14T09:30:00"),
    ("from=*@example.com&subject=report&action=delivered",
     lambda s: s["envelope_from"].endswith("@example.com") and "report" in s["subject"]
     and s["action"] == "delivered"),
    ("to=rcpt0@finance.example.com&status=delivered&client=198.51.100.1",
     lambda s: "rcpt0@finance.example.com" in s["recipients"] and s["status"] == "delivered"
     and s["client_ip"] == "198.51.100.1"),
]


@pytest.mark.parametrize("probe", [4000, 10, 2],
                         ids=["words-checked", "words-checked-or-index", "subject-index"])
@pytest.mark.parametrize(("query", "keep"), SEARCHES, ids=[q or "all" for q, _k in SEARCHES])
def test_a_search_finds_what_filtering_every_row_finds_newest_first(
        views: Projections, query: str, keep: Any, probe: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given subject words checked row by row (on every row, or on a probe of 10 rows before
    # the subject index drives), or the subject index driving whenever they are the most
    # selective filter (a probe of 2 rows never fills a page of 3)
    monkeypatch.setattr("katagate.projector.search.PROBE", probe)
    # When searched, following the cursor page by page
    found = all_pages(views, query)
    # Then the rows are those every summary filtered by hand gives, newest first, each once
    assert ids(found) == expected(views, keep)
    # And a row carries the contract's keys, equal to the message's summary
    for row in found[:3]:
        summary = views.summary(row["message_id"])
        assert summary is not None
        assert row == {k: summary[k] for k in row}
        assert set(row) >= {"message_id", "received_at", "envelope_from", "recipients",
                            "subject", "size", "client_ip", "rule_id", "verdict", "detects",
                            "action", "status", "last_reply", "next_attempt_at", "backup"}


@pytest.mark.parametrize(("query", "drives"), [
    ("", "received_at"), ("from=a@b.example&to=c@d.example", "sender"),
    ("client=192.0.2.1&to=c@d.example", "client_ip"), ("to=c@d.example&verdict=detected", "to"),
    ("to=*@d.example&from=*@b.example", "sender_domain"), ("to=*@d.example", "to_domain"),
    ("verdict=not_detected&status=bounced", "status"), ("verdict=detected", "row_verdict"),
    ("verdict=skipped&since=2026-01-01T00:00:00Z", "received_at"),
    ("action=delivered&status=delivered&subject=x", "received_at"),
])
def test_the_most_selective_filter_drives(query: str, drives: str) -> None:
    assert driver(parse(query, "search"), "search") == drives


def test_oldest_first_is_the_same_rows_reversed(views: Projections) -> None:
    newest = ids(all_pages(views, "to=*@finance.example.com&verdict=detected"))
    oldest = ids(all_pages(views, "to=*@finance.example.com&verdict=detected&order=asc"))
    assert newest
    assert oldest == newest[::-1]


def test_the_quarantine_sorts_by_each_column(tmp_path: Path) -> None:
    # Given six messages waiting for a verdict (admitted, not released) and one released
    routed: Routed = [p for i in range(6) for p in message_flow(i, "timeout")[:4]]
    routed += message_flow(9, "clean")
    views = reduce(evolve, (e for _t, e in routed),
                   Projections(store=TimelineStore(tmp_path / "q.sqlite")))
    # When sorted by size, largest first, two at a time
    rows = all_pages(views, "sort=size&order=desc", "quarantine")
    # Then every waiting message is listed once, in that order, with its deadline
    assert [r["size"] for r in rows] == [1005, 1004, 1003, 1002, 1001, 1000]
    assert all(r["deadline_at"] > r["admitted_at"] for r in rows)
    by_from = [r["envelope_from"] for r in all_pages(views, "sort=from&order=asc",
                                                     "quarantine")]
    assert by_from == sorted(by_from)
    assert ids(all_pages(views, "sort=deadline_at&order=asc", "quarantine")) == [
        f"MSG{i:08d}" for i in range(6)]
    assert ids(all_pages(views, "sort=received_at&from=*@example.com", "quarantine")) == [
        "MSG00000005", "MSG00000002"]


def test_the_backup_lists_copies_with_their_removal_and_resends(views: Projections) -> None:
    # When the Backup is listed
    copies = all_pages(views, "", "backup")
    # Then every message with a copy is listed, newest first
    assert ids(copies) == expected(views, lambda s: s["backup"] is not None)
    assert len(copies) == 4
    removed = [c for c in copies if c["removed"] is not None]
    held = [c for c in copies if c["removed"] is None]
    assert len(removed) == len(held) == 2
    assert removed[0]["backup"]["state"] == "removed"
    assert removed[0]["removed"]["cause"] == "deleted_by_admin"
    assert removed[0]["removed"]["actor"] == "admin"
    copy = held[0]
    assert copy["backup"]["state"] == "held"
    assert copy["location"]["topic"] == "katagate.backup"
    assert copy["expires_at"] > copy["stored_at"]
    # And its resends, in order, each with what came of it
    assert [(r["to"], r["outcome"]) for r in copy["resends"]] == [
        (["helpdesk@example.com"], "delivered"), (["bob@example.net"], "deferred")]
    assert copy["resends"][1]["reply"] == "451 4.3.0 later"
    # And its filters: a state, words of a detect's name, the common ones
    assert ids(all_pages(views, "state=held", "backup")) == ids(held)
    assert ids(all_pages(views, "detect=trojan+heur", "backup")) == ids(copies)
    assert all_pages(views, "detect=eicar", "backup") == []
    assert ids(all_pages(views, "from=user3@partner.example.org", "backup")) == expected(
        views, lambda s: s["backup"] is not None
        and s["envelope_from"] == "user3@partner.example.org")
    # And one copy by its id; a message without one is not a copy
    assert views.backup_copy(copy["message_id"]) == copy
    assert views.backup_copy("MSG00000000") is None


def test_the_queue_lists_deferred_messages_with_their_attempts(views: Projections) -> None:
    queued = all_pages(views, "", "queue")
    assert ids(queued) == expected(views, lambda s: s["status"] == "deferred")
    assert len(queued) == 4
    row = queued[0]
    assert row["attempts"] == 2
    assert row["first_attempt_at"] < row["next_attempt_at"]
    assert row["last_reply"] == "451 4.3.0 Try again later"
    assert row["next_hop"] == "mx.internal.example.com:25"
    assert row["requested"]["action"] == "retry"
    # A message that was deferred and then delivered is not waiting
    timed_out = next(m for m in views.message_ids() if views.summary(m)["verdict"] == "timed_out")  # type: ignore[index]
    assert timed_out not in ids(queued)


# -- the Backup's usage, from its ledger ------------------------------------------------

def test_backup_usage_is_the_ledgers_latest_whatever_copy_came_first() -> None:
    # Given the Backup ledger's events of four copies, two of them removed
    ledger: list[Event] = [e for t, e in all_flows(MESSAGES, ALL_SCENARIOS)
                           if t == "quarantine" and isinstance(e, BackupLedgerEvent)]
    latest = max(ledger, key=lambda e: (e.occurred_at, e.event_id.hex))
    # When folded in ledger order, and reversed (the mirrors read first)
    for order in (ledger, ledger[::-1]):
        view = reduce(backup_usage.evolve, order, BackupUsage())
        # Then the usage is the latest event's, and the limits the settings'
        assert backup_usage.render(view) == {
            "bytes_in_use": latest.bytes_in_use, "copies_in_use": latest.copies_in_use,
            "limit_bytes": 10 * 1024**3, "max_age_days": 30}


def test_a_backup_ledger_event_counts_once_of_its_two_copies() -> None:
    flow = message_flow(7, "backup")
    ledger = [e for _t, e in flow if isinstance(e, BackupLedgerEvent)]
    assert len(ledger) == 4  # retained and removed, each with its mirror
    copies = LedgerCopies()
    assert [copies.first(e) for e in ledger] == [True, False, True, False]
    assert copies.waiting == set()


# -- any combination of filters ----------------------------------------------------------

def matches(row: dict[str, Any], asked: dict[str, str]) -> bool:
    """The filters' meaning (README, "The search filters"), on a row, by hand."""
    sender, words = row["envelope_from"].lower(), re.findall(r"[^\W_]+", row["subject"].lower())
    recipients = [r.lower() for r in row["recipients"]]
    checks = {
        "from": lambda v: sender == ("" if v == "<>" else v.lower()) if not v.startswith("*@")
        else sender.endswith("@" + v[2:].lower()),
        "to": lambda v: any(r.endswith("@" + v[2:].lower()) for r in recipients)
        if v.startswith("*@") else v.lower() in recipients,
        "subject": lambda v: all(any(w.startswith(q) for w in words) for q in v.split()),
        "client": lambda v: row["client_ip"] == v,
        "since": lambda v: row["received_at"] >= v,
        "until": lambda v: row["received_at"] < v,
        "verdict": lambda v: row["verdict"].startswith("skipped:") if v == "skipped"
        else row["verdict"] == v,
        "action": lambda v: row["action"] == v,
        "status": lambda v: row["status"] == v,
    }
    return all(checks[name](value) for name, value in asked.items())


CHOICES = {
    "from": ["user1@supplier.example.net", "USER0@partner.example.org", "*@example.com",
             "*@partner.example.org", "<>"],
    "to": ["rcpt1@finance.example.com", "*@finance.example.com", "all0@staff.example.com",
           "*@staff.example.com"],
    "subject": ["invoice", "inv", "report", "meeting notes", "re", "overdue invoice", "1"],
    "client": ["198.51.100.1", "198.51.100.4"],
    "since": ["2025-03-14T09:30:00.000000Z", "2025-03-14T09:40:00.000000Z"],
    "until": ["2025-03-14T09:35:00.000000Z", "2025-03-14T09:50:00.000000Z"],
    "verdict": ["detected", "not_detected", "skipped", "timed_out", "skipped:error", "pending"],
    "action": ["delivered", "tagged", "deleted", "rejected"],
    "status": ["delivered", "deferred", "bounced", "discarded", "rejected", "pending"],
}


@pytest.mark.parametrize("probe", [10_000, 3])
def test_any_combination_of_filters_finds_what_they_mean(
        views: Projections, probe: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the subject index driving early (a probe of 3 rows) or late
    monkeypatch.setattr("katagate.projector.search.PROBE", probe)
    rng = random.Random(probe)
    rows = all_pages(views, "order=asc")
    for _ in range(150):
        # When searched with one to four filters at random, in pages of 1 to 4, either order
        asked = {name: rng.choice(CHOICES[name])
                 for name in rng.sample(sorted(CHOICES), rng.randint(1, 4))}
        order = rng.choice(("asc", "desc"))
        query = urlencode({**asked, "order": order, "limit": rng.randint(1, 4)})
        found, cursor = [], None
        while True:
            page = views.search(parse(query + (f"&cursor={cursor}" if cursor else ""),
                                      "search"), "search")
            found += page["messages"]
            cursor = page["next"]
            if cursor is None:
                break
        # Then the rows are exactly those the filters mean, in the order asked, each once
        wanted = [r["message_id"] for r in rows if matches(r, asked)]
        assert ids(found) == (wanted if order == "asc" else wanted[::-1]), query


def test_a_search_that_reads_too_long_is_stopped_and_the_store_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a store with messages added but not yet committed, whose searches may read 0 s
    path = tmp_path / "slow.sqlite"
    views = reduce(evolve, (e for _t, e in all_flows(8, ALL_SCENARIOS)),
                   Projections(store=TimelineStore(path)))
    monkeypatch.setattr(store, "SEARCH_TIME_LIMIT_S", -1.0)
    monkeypatch.setattr(store, "SEARCH_CHECK_STEPS", 1)
    # When a search runs
    with pytest.raises(SearchTooSlow, match="narrow it"):
        views.search(parse("subject=a", "search"), "search")
    # Then nothing it held was lost: with the limit back, what was added commits and is found
    monkeypatch.undo()
    found = all_pages(views, "")
    views.store.commit()
    views.close()
    reopened = Projections(store=TimelineStore(path))
    assert ids(all_pages(reopened, "")) == ids(found)
    assert len(found) == 8
    reopened.close()
