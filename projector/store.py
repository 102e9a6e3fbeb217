"""Timelines and message summaries in SQLite, so a projection's memory stays bounded however
long the log grows.

`messages` holds one row per message: its summary and the search columns (`rows.columns`),
indexed; `recipients`, `recipient_domains` and the full-text `subjects` index what a message
was received with (search.py reads them). `timelines` holds the records of each message's
events as read (in reading order; the timeline sorts them). `meta` holds what the owner stores
beside them — the small views and the positions they are the fold of — committed in the same
transaction. A file of another layout (`STORE_FORMAT`) is emptied when opened.

Writes are buffered: `add` updates the message's summary in a bounded cache of recent messages
and keeps the record; `flush` writes one row per message touched (reads flush first, so they
always see every add). Nothing is durable before `commit`. A store opened on "" is a private
temporary database that SQLite deletes when it is closed (the replay's). The replay's is built
without search (`searchable=False`): its search columns are left empty, and the indexes and the
recipient and subject tables are not made. Nothing searches it, and keeping them up cost about
a tenth of its time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from katagate.projector import rows, search
from katagate.projector.search_filters import Search
from katagate.projector.summary import Key, MessageSummary, Observation
from katagate.schemas import Event, MessageReceived
from katagate.schemas.errors import KatagateError

# A search holds the projection's lock while it runs (the fold and every other request wait):
# one that reads for longer than this is stopped and answered 503, naming how to narrow it.
SEARCH_TIME_LIMIT_S = 2.0
SEARCH_CHECK_STEPS = 10_000  # SQLite steps between two looks at the clock


class SearchTooSlow(KatagateError):
    """A search read for longer than SEARCH_TIME_LIMIT_S; nothing was changed by stopping it."""

STORE_FORMAT = 2  # the tables' layout (SQLite's user_version)
# The search columns beside each summary (rows.columns computes them), each indexed with the
# received time after it, so a filter reads its matches newest first and stops at a page.
SEARCH_COLUMNS = ("received_at", "sender", "sender_domain", "client_ip", "row_verdict",
                  "row_action", "status", "size", "held", "deadline_at", "backup", "detects",
                  "words")
TABLES = (
    f"""CREATE TABLE IF NOT EXISTS messages (
        message_id TEXT PRIMARY KEY, summary TEXT NOT NULL,
        action TEXT, reason TEXT, verdict TEXT, outcome TEXT, {", ".join(SEARCH_COLUMNS)})""",
    # The records in a table of their own: a message row stays small (most fit a page with
    # others), so a search that checks rows one by one never reads a timeline.
    """CREATE TABLE IF NOT EXISTS timelines (message_id TEXT PRIMARY KEY,
        records BLOB NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)
SEARCH_SCHEMA = (
    *(f"CREATE INDEX IF NOT EXISTS messages_{c} ON messages ({c}, received_at, message_id)"
      for c in ("sender", "sender_domain", "client_ip", "row_verdict", "row_action",
                "status")),
    "CREATE INDEX IF NOT EXISTS messages_received ON messages (received_at, message_id)",
    # Small subsets: the KATA Quarantine's held messages, the Backup's copies.
    "CREATE INDEX IF NOT EXISTS messages_held ON messages (message_id) WHERE held = 1",
    """CREATE INDEX IF NOT EXISTS messages_backup ON messages (received_at, message_id)
        WHERE backup IS NOT NULL""",
    # Recipients and their domains, one row per message each (a message to two addresses
    # of one domain is found once by *@domain).
    """CREATE TABLE IF NOT EXISTS recipients (address TEXT, received_at INTEGER,
        message_id TEXT, PRIMARY KEY (address, received_at, message_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS recipient_domains (domain TEXT, received_at INTEGER,
        message_id TEXT, PRIMARY KEY (domain, received_at, message_id)) WITHOUT ROWID""",
    # Subject words: a full-text index keyed by the message row's rowid (contentless: the
    # subject itself is in the summary), splitting words as rows.words does.
    """CREATE VIRTUAL TABLE IF NOT EXISTS subjects USING fts5(subject, content='',
        tokenize="unicode61 remove_diacritics 0")""",
)
# One statement per message per flush, however many of its events came: new records are
# appended to the message's row.
UPSERT = f"""INSERT INTO messages VALUES ({", ".join("?" for _ in range(6 + len(SEARCH_COLUMNS)))})
    ON CONFLICT (message_id) DO UPDATE
    SET summary = excluded.summary, action = excluded.action, reason = excluded.reason,
        verdict = excluded.verdict, outcome = excluded.outcome,
        {", ".join(f"{c} = excluded.{c}" for c in SEARCH_COLUMNS)}"""  # noqa: S608 (fixed names)
APPEND = """INSERT INTO timelines VALUES (?, ?) ON CONFLICT (message_id) DO UPDATE
    SET records = CAST(records || excluded.records AS BLOB)"""
SUBJECT = """INSERT INTO subjects (rowid, subject)
    SELECT rowid, ? FROM messages WHERE message_id = ?"""
# The listing filters, by the column that holds each.
FILTER_COLUMNS = {"action": "action", "reason": "reason", "state": "verdict",
                  "outcome": "outcome"}
HOT_MESSAGES = 10_000  # summaries kept in memory: messages still in flight, mostly
RECORDS_PER_FLUSH = 20_000
PAGE = 1000
UNSEARCHED = (None,) * len(SEARCH_COLUMNS)


def pack(records: list[bytes]) -> bytes:
    """Records as one blob, each behind its 4-byte big-endian length."""
    return b"".join(len(r).to_bytes(4, "big") + r for r in records)


def unpack(blob: bytes) -> list[bytes]:
    records, at = [], 0
    while at < len(blob):
        size = int.from_bytes(blob[at:at + 4], "big")
        records.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    return records


class NotSearchable(KatagateError):
    """A search asked of a store built without its search indexes (a replay's scratch)."""


class TimelineStore:
    def __init__(self, path: str | Path = "", cache_mib: int = 16,
                 searchable: bool = True) -> None:
        self.path = str(path)
        if not searchable and self.path not in ("", ":memory:"):
            # A file is reopened later, searchable, and would lack the rows written meanwhile.
            raise ValueError("only a scratch store (path '') may be built without search")
        self.searchable = searchable
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")
        if self.path in ("", ":memory:"):
            self._db.execute("PRAGMA journal_mode = OFF")  # scratch: nothing to recover
            self._db.execute("PRAGMA synchronous = OFF")
        else:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # a crash may lose the last commit
        if self._db.execute("PRAGMA user_version").fetchone()[0] != STORE_FORMAT:
            # Rows of another format: dropped (with the positions in meta), so the owner
            # rebuilds them from offset 0.
            for table in ("messages", "timelines", "meta", "recipients", "recipient_domains",
                          "subjects"):
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
            self._db.execute(f"PRAGMA user_version = {STORE_FORMAT}")
        for statement in (*TABLES, *SEARCH_SCHEMA) if searchable else TABLES:
            self._db.execute(statement)
        self._db.execute("BEGIN")
        self._hot: OrderedDict[str, MessageSummary] = OrderedDict()
        self._new: dict[str, list[bytes]] = {}  # records added since the last flush
        self._received: set[str] = set()  # messages whose envelope came since then
        self._buffered = 0

    # -- writing ---------------------------------------------------------------------

    def add(self, message_id: str, key: Key, event: Event,
            record: bytes) -> list[Observation]:
        """One mail event, once (the caller removes copies); `key` is its timeline position.
        Returns the observations the message's summary completes with it."""
        summary = self._hot.get(message_id)
        if summary is None:
            summary = self._load(message_id) or MessageSummary()
            self._hot[message_id] = summary
        observations = summary.add(key, event)
        if isinstance(event, MessageReceived):
            self._received.add(message_id)
        new = self._new.get(message_id)
        if new is None:
            self._new[message_id] = [record]
        else:
            new.append(record)
        self._buffered += 1
        if self._buffered >= RECORDS_PER_FLUSH:
            self.flush()
        return observations

    def flush(self) -> None:
        """Write what was added (inside the open transaction)."""
        if self._new:
            self._db.executemany(UPSERT, [
                (m, json.dumps(s.to_state(), separators=(",", ":")), s.action, s.reason,
                 s.verdict_state, s.outcome_name,
                 *(rows.columns(s) if self.searchable else UNSEARCHED))
                for m in self._new for s in (self._hot[m],)])
            self._db.executemany(APPEND, [(m, pack(records))
                                          for m, records in self._new.items()])
            if self.searchable:
                self._index_envelopes()
            else:
                self._received.clear()
            self._new.clear()
            self._buffered = 0
        while len(self._hot) > HOT_MESSAGES:  # all written now: the oldest can go
            self._hot.popitem(last=False)

    def _index_envelopes(self) -> None:
        """The recipients and subject words of the messages received since the last flush
        (each message's envelope comes once, with `mail.received`)."""
        addresses, domains, subjects = [], [], []
        for m in sorted(self._received):
            envelope, at = self._hot[m].envelope, self._hot[m].received_at
            if envelope is None:
                continue
            for address in {str(a).lower() for a in envelope[1]}:
                addresses.append((address, at, m))
                domains.append((address.rpartition("@")[2], at, m))
            if envelope[2]:
                subjects.append((str(envelope[2]), m))
        self._db.executemany("INSERT OR IGNORE INTO recipients VALUES (?, ?, ?)", addresses)
        self._db.executemany("INSERT OR IGNORE INTO recipient_domains VALUES (?, ?, ?)",
                             domains)
        self._db.executemany(SUBJECT, subjects)
        self._received.clear()

    def commit(self, meta: dict[str, str] | None = None) -> None:
        """Make everything added so far durable, with `meta`, in one transaction."""
        self.flush()
        if meta:
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        self._db.execute("COMMIT")
        self._db.execute("BEGIN")

    def clear(self) -> None:
        """Forget everything (a rebuild), committed at once."""
        self._new.clear()
        self._hot.clear()
        self._received.clear()
        self._buffered = 0
        for table in ("messages", "timelines", "meta") + (
                ("recipients", "recipient_domains") if self.searchable else ()):
            self._db.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
        if self.searchable:
            self._db.execute("INSERT INTO subjects (subjects) VALUES ('delete-all')")
        self.commit()

    def _load(self, message_id: str) -> MessageSummary | None:
        row = self._db.execute("SELECT summary FROM messages WHERE message_id = ?",
                               (message_id,)).fetchone()
        return None if row is None else MessageSummary.from_state(json.loads(row[0]))

    # -- reading (every read sees every add) -----------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def summary(self, message_id: str) -> MessageSummary | None:
        hot = self._hot.get(message_id)
        if hot is not None:
            return hot
        self.flush()
        return self._load(message_id)

    def records(self, message_id: str) -> list[bytes]:
        """The message's event records as they were added ([] for an unknown message)."""
        self.flush()
        row = self._db.execute("SELECT records FROM timelines WHERE message_id = ?",
                               (message_id,)).fetchone()
        return [] if row is None else unpack(bytes(row[0]))

    def message_ids(self, after: str | None = None) -> Iterator[str]:
        """Every message id in ascending order, strictly after `after`, read a page at a time
        (so writes may go on between pages)."""
        last = after or ""
        while True:
            self.flush()
            page = [str(row[0]) for row in self._db.execute(
                "SELECT message_id FROM messages WHERE message_id > ? "
                "ORDER BY message_id LIMIT ?", (last, PAGE))]
            yield from page
            if len(page) < PAGE:
                return
            last = page[-1]

    def listing(self, after: str | None, limit: int,
                filters: dict[str, str]) -> tuple[list[tuple[str, MessageSummary]], bool]:
        """Up to `limit` summaries after `after` matching every filter, in message id order,
        and whether more follow."""
        self.flush()
        where = ["message_id > ?"] + [f"{FILTER_COLUMNS[name]} = ?" for name in filters]
        rows = self._db.execute(
            f"SELECT message_id, summary FROM messages WHERE {' AND '.join(where)} "  # noqa: S608 (whitelisted columns)
            "ORDER BY message_id LIMIT ?", (after or "", *filters.values(), limit + 1)
        ).fetchall()
        found = [(str(m), MessageSummary.from_state(json.loads(s))) for m, s in rows[:limit]]
        return found, len(rows) > limit

    def search(self, asked: Search,
               listing: str) -> tuple[list[tuple[str, MessageSummary]], str | None]:
        """A page of a listing's rows matching `asked`, and the next page's cursor."""
        if not self.searchable:
            raise NotSearchable("this store was built without its search indexes (a replay's)")
        self.flush()
        deadline = time.monotonic() + SEARCH_TIME_LIMIT_S
        # A non-zero answer interrupts the statement (a read: the open transaction and what it
        # holds are kept).
        self._db.set_progress_handler(lambda: int(time.monotonic() > deadline),
                                      SEARCH_CHECK_STEPS)
        try:
            return search.page(self._db, asked, listing)
        except sqlite3.OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            raise SearchTooSlow(
                f"the search read for more than {SEARCH_TIME_LIMIT_S:g} s; narrow it: "
                "a time range (since, until), a sender or recipient, longer subject words"
            ) from exc
        finally:
            self._db.set_progress_handler(None, 0)

    def count(self) -> int:
        self.flush()
        return int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])

    def close(self) -> None:
        self._db.close()
