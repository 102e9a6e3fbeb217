"""Searches over the store's message rows: a validated `Search` (search_filters.py) as one
SQL query (pure, `plan`), and its page (`page`, over the store's connection).

Every filter is a condition on an indexed column; the query reads the rows newest first along
an index that has the received time after the filtered column, so it stops after a page
(keyset paging: the cursor is the last row's sort value and message id). A recipient filter
reads the recipients table in that order and joins each row; subject words come from the
full-text index. The KATA Quarantine and the Backup read their own small subsets.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from projector.search_filters import Search, encode_cursor
from projector.summary import MessageSummary

SORT_COLUMNS = {"received_at": "m.received_at", "size": "m.size",
                "deadline_at": "m.deadline_at", "from": "m.sender"}
# Each listing's subset, and the index that holds it when the subset is small.
SUBSETS = {"search": ("m.received_at IS NOT NULL", None),
           "quarantine": ("m.held = 1", "messages_held"),
           "backup": ("m.backup IS NOT NULL", "messages_backup"),
           "queue": ("m.status = 'deferred'", None)}


def _subject(words: tuple[str, ...]) -> str:
    """An FTS5 query: every word, as a word or a word prefix."""
    return " AND ".join(f'"{w}"*' for w in words)


def plan(search: Search, listing: str) -> tuple[str, list[Any]]:
    """The SQL of one page (one row more than the limit, to tell whether more follow)."""
    subset, index = SUBSETS[listing]
    where: list[str] = [subset] if not search.legacy else ["m.held = 1"]
    params: list[Any] = []
    by_recipient = listing in ("search", "queue") and (search.to or search.to_domain)
    if by_recipient:
        table, value = (("recipients r", search.to) if search.to
                        else ("recipient_domains r", search.to_domain))
        source = f"{table} CROSS JOIN messages m ON m.message_id = r.message_id"
        where.append("r.address = ?" if search.to else "r.domain = ?")
        params.append(value)
        order_by, ident = "r.received_at", "r.message_id"
    else:
        source = f"messages m INDEXED BY {index}" if index else "messages m"
        order_by, ident = SORT_COLUMNS[search.sort], "m.message_id"
        for address, table, column in ((search.to, "recipients", "address"),
                                       (search.to_domain, "recipient_domains", "domain")):
            if address is not None:
                where.append(f"EXISTS (SELECT 1 FROM {table} r WHERE r.{column} = ? AND "  # noqa: S608 (fixed names)
                             "r.received_at = m.received_at AND r.message_id = m.message_id)")
                params.append(address)
    for column, value in (("m.sender", search.sender), ("m.sender_domain", search.sender_domain),
                          ("m.client_ip", search.client), ("m.row_action", search.action),
                          ("m.status", search.status), ("m.backup", search.backup_state)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if search.verdict == "skipped":  # any Skipped: a range of the index
        where.append("m.row_verdict >= 'skipped:' AND m.row_verdict < 'skipped;'")
    elif search.verdict is not None:
        where.append("m.row_verdict = ?")
        params.append(search.verdict)
    if search.since is not None:
        where.append(f"{order_by if by_recipient else 'm.received_at'} >= ?")
        params.append(search.since)
    if search.until is not None:
        where.append(f"{order_by if by_recipient else 'm.received_at'} < ?")
        params.append(search.until)
    if search.subject:
        where.append("m.rowid IN (SELECT rowid FROM subjects WHERE subjects MATCH ?)")
        params.append(_subject(search.subject))
    for word in search.detect:
        where.append("instr(' ' || m.detects, ?) > 0")
        params.append(" " + word)
    if search.legacy:
        order_by, direction = "m.message_id", "ASC"
        if search.after is not None:
            where.append("m.message_id > ?")
            params.append(search.after)
        order = "m.message_id ASC"
    else:
        direction = "DESC" if search.order == "desc" else "ASC"
        if search.cursor is not None:
            where.append(f"({order_by}, {ident}) {'<' if direction == 'DESC' else '>'} (?, ?)")
            params.extend(search.cursor)
        order = f"{order_by} {direction}, {ident} {direction}"
    sql = (f"SELECT m.message_id, m.summary, {order_by} FROM {source} "  # noqa: S608 (fixed names)
           f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?")
    params.append(search.limit + 1)
    return sql, params


def page(db: sqlite3.Connection, search: Search,
         listing: str) -> tuple[list[tuple[str, MessageSummary]], str | None]:
    """A page of (message id, summary) and the cursor of the next page (None: the last)."""
    sql, params = plan(search, listing)
    found = db.execute(sql, params).fetchall()
    rows = [(str(m), MessageSummary.from_state(json.loads(s))) for m, s, _v in found]
    if len(found) <= search.limit:
        return rows[:search.limit], None
    last = found[search.limit - 1]
    if search.legacy:
        return rows[:search.limit], str(last[0])
    return rows[:search.limit], encode_cursor(search.sort, search.order, last[2], str(last[0]))
