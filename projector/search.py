"""Searches over the store's message rows: a validated `Search` (search_filters.py) as SQL
(`plan`, pure) and its page (`page`, over the store's connection).

Each query reads one index newest first — the *driver*, chosen by the filters given, the most
selective first: sender, client, recipient (the recipients table), sender domain, recipient
domain, a verdict, status or action other than the usual one, else the received time — and
checks every other filter row by row, stopping after a page (keyset paging: the cursor is the
last row's sort value and message id). Every driver index has the received time after its
column, so the rows come in page order without sorting.

Subject words are checked on the row's words (word prefixes) when another filter drives. When
they are the most selective filter, the driver's first `PROBE` rows are tried (the PROBE-th
row's position read from the index alone bounds the read); a page not full by then means the
words are rare, and the full-text index drives instead (its matches sorted: few, since rare).
The KATA Quarantine and the Backup read their own small subsets.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from katagate.projector.search_filters import Search, encode_cursor
from katagate.projector.summary import MessageSummary

PROBE = 10_000  # rows of the driver tried before subject words drive
SORT_COLUMNS = {"received_at": "m.received_at", "size": "m.size",
                "deadline_at": "m.deadline_at", "from": "m.sender"}
# A filter's usual value reads most of the table: it never drives. Nor does `skipped`, a
# range of values, whose index is not in received order.
USUAL = {"row_verdict": ("not_detected", "skipped"), "status": ("delivered",),
         "row_action": ("delivered",)}
Query = tuple[str, list[Any]]


def _subject(words: tuple[str, ...]) -> str:
    """An FTS5 query: every word, as a word or a word prefix."""
    return " AND ".join(f'"{w}"*' for w in words)


def driver(search: Search, listing: str) -> str:
    """The index a query reads: a column of `messages`, `to`/`to_domain` (the recipients
    tables), or a listing's subset."""
    if search.legacy or listing == "quarantine":
        return "held"
    if listing == "backup":
        return "backup"
    if listing == "queue":
        return "status"
    for name, value in (("sender", search.sender), ("client_ip", search.client),
                        ("to", search.to), ("sender_domain", search.sender_domain),
                        ("to_domain", search.to_domain)):
        if value is not None:
            return name
    for column, value in (("row_verdict", search.verdict), ("status", search.status),
                          ("row_action", search.action)):
        if value is not None and value not in USUAL[column]:
            return column
    return "received_at"


Cond = tuple[str, list[Any]]


def _conditions(search: Search, listing: str, drive: str) -> list[Cond]:
    """Every filter as a check on the row `m` (but a recipients table's or the subject
    index's, when it drives)."""
    subset = {"search": "m.received_at IS NOT NULL", "quarantine": "m.held = 1",
              "backup": "m.backup IS NOT NULL", "queue": "m.status = 'deferred'"}[listing]
    where: list[Cond] = [(subset, [])]
    for column, value in (("m.sender", search.sender), ("m.sender_domain", search.sender_domain),
                          ("m.client_ip", search.client), ("m.row_action", search.action),
                          ("m.status", search.status), ("m.backup", search.backup_state)):
        if value is not None:
            where.append((f"{column} = ?", [value]))
    if search.verdict == "skipped":  # any Skipped: a range of the index
        where.append(("m.row_verdict >= 'skipped:' AND m.row_verdict < 'skipped;'", []))
    elif search.verdict is not None:
        where.append(("m.row_verdict = ?", [search.verdict]))
    for name, table, column, value in (("to", "recipients", "address", search.to),
                                       ("to_domain", "recipient_domains", "domain",
                                        search.to_domain)):
        if value is not None and name != drive:
            where.append((f"EXISTS (SELECT 1 FROM {table} r WHERE r.{column} = ? AND "  # noqa: S608 (fixed names)
                          "r.received_at = m.received_at AND r.message_id = m.message_id)",
                          [value]))
    if drive != "subjects":
        where += [("instr(' ' || m.words, ?) > 0", [" " + w]) for w in search.subject]
    where += [("instr(' ' || m.detects, ?) > 0", [" " + w]) for w in search.detect]
    return where


def _own(search: Search, drive: str) -> list[Cond]:
    """The driver's own filter (what its index is read for)."""
    if drive in ("to", "to_domain"):
        return [("r.address = ?", [search.to]) if drive == "to"
                else ("r.domain = ?", [search.to_domain])]
    values = {"sender": search.sender, "client_ip": search.client,
              "sender_domain": search.sender_domain, "row_action": search.action,
              "status": search.status}
    if drive == "row_verdict" and search.verdict is not None:
        return [("m.row_verdict = ?", [search.verdict])]
    if values.get(drive) is not None:
        return [(f"m.{drive} = ?", [values[drive]])]
    return []


def _paging(search: Search, sort: str, ident: str) -> tuple[list[Cond], str]:
    """The time range, the cursor and the order, on the driver's columns."""
    if search.legacy:
        after = [] if search.after is None else [(f"{ident} > ?", [search.after])]
        return after, f"{ident} ASC"
    received = sort if sort.endswith("received_at") else "m.received_at"
    where: list[Cond] = [(f"{received} {op} ?", [bound]) for bound, op in ((search.since, ">="),
                                                                (search.until, "<"))
             if bound is not None]
    direction = "DESC" if search.order == "desc" else "ASC"
    if search.cursor is not None:
        where.append((f"({sort}, {ident}) {'<' if direction == 'DESC' else '>'} (?, ?)",
                      [*search.cursor]))
    return where, f"{sort} {direction}, {ident} {direction}"


def _joined(conditions: list[Cond]) -> Query:
    return (" AND ".join(c for c, _p in conditions) or "1",
            [p for _c, params in conditions for p in params])


def plan(search: Search, listing: str, mode: str = "index",
         window: tuple[Any, str] | None = None) -> Query:
    """The SQL of one page (a row more than the limit: whether more follow). `mode`: "index"
    (the driver, every row it reads checked; with `window`, only its rows up to that sort
    value and id), "window" (the sort value and id of the driver's PROBE-th row), "subjects"
    (the full-text index drives)."""
    drive = "subjects" if mode == "subjects" else driver(search, listing)
    sort = "m.message_id" if search.legacy else SORT_COLUMNS[search.sort]
    ident, source_params = "m.message_id", []
    if drive in ("to", "to_domain"):
        table = "recipients" if drive == "to" else "recipient_domains"
        source = f"{table} r CROSS JOIN messages m ON m.message_id = r.message_id"
        sort, ident = "r.received_at", "r.message_id"
    elif drive == "subjects":
        source = ("(SELECT rowid AS id FROM subjects WHERE subjects MATCH ?) f "
                  "CROSS JOIN messages m ON m.rowid = f.id")
        source_params = [_subject(search.subject)]
    else:
        index = {"held": "messages_held", "backup": "messages_backup",
                 "received_at": "messages_received"}.get(drive, f"messages_{drive}")
        source = f"messages m INDEXED BY {index}"
    own = _own(search, drive)
    paging, order = _paging(search, sort, ident)
    if mode == "window":
        # The driver's index alone (its own filter, the range, the cursor): PROBE entries.
        if drive in ("to", "to_domain"):
            source = "recipients r" if drive == "to" else "recipient_domains r"
        where, params = _joined(own + paging)
        return (f"SELECT {sort}, {ident} FROM {source} WHERE {where} "  # noqa: S608 (fixed names)
                f"ORDER BY {order} LIMIT 1 OFFSET {PROBE - 1}", params)
    checks = _conditions(search, listing, drive)
    if window is not None:
        newest_first = search.order == "desc"
        checks.append((f"({sort}, {ident}) {'>=' if newest_first else '<='} (?, ?)",
                       [*window]))
    where, params = _joined(own + paging + checks)
    sql = (f"SELECT m.message_id, m.summary, {sort} FROM {source} "  # noqa: S608 (fixed names)
           f"WHERE {where} ORDER BY {order} LIMIT ?")
    return sql, [*source_params, *params, search.limit + 1]


def page(db: sqlite3.Connection, search: Search,
         listing: str) -> tuple[list[tuple[str, MessageSummary]], str | None]:
    """A page of (message id, summary) and the cursor of the next page (None: the last)."""
    found: list[Any] | None = None
    if search.subject and listing == "search" and driver(search, listing) in (
            "sender_domain", "to_domain", "row_verdict", "status", "row_action",
            "received_at"):
        # Subject words may be the most selective filter: the driver's first PROBE rows are
        # checked; a page not full in them means rare words, which the subject index drives.
        window = db.execute(*plan(search, listing, "window")).fetchone()
        if window is not None:
            found = db.execute(*plan(search, listing, window=tuple(window))).fetchall()
            if len(found) <= search.limit:
                found = db.execute(*plan(search, listing, "subjects")).fetchall()
    if found is None:
        found = db.execute(*plan(search, listing)).fetchall()
    rows = [(str(m), MessageSummary.from_state(json.loads(s))) for m, s, _v in found]
    if len(found) <= search.limit:
        return rows, None
    last = found[search.limit - 1]
    if search.legacy:
        return rows[:search.limit], str(last[0])
    return rows[:search.limit], encode_cursor(search.sort, search.order, last[2], str(last[0]))
