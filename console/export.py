"""What an export holds: the settings and the rules as CSV, one row per setting or rule, with
the labels the pages show (pure). A cell a spreadsheet would read as a formula (`=`, `+`, `-`,
`@`, tab, CR) is quoted with a leading `'`, so an export opened in one runs nothing."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from katagate.console.pages import rules_page
from katagate.schemas import ControlState

VIEWS = ("settings", "rules")
FORMATS = ("json", "csv")
RULE_COLUMNS = ("rule_id", "name", "position", "enabled", "kata_enabled", "action", "tag",
                "backup", "senders", "recipients", "on_unavailable")


def _cell(value: object) -> str:
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([_cell(value) for value in row] for row in rows)
    return out.getvalue()


def settings_csv(state: ControlState) -> str:
    rows: list[tuple[str, object]] = [("version", state.version),
                                      ("kata_protection", state.protection_enabled)]
    rows += list(state.settings.model_dump(mode="json").items())
    return _csv(("setting", "value"), rows)


def rules_csv(state: ControlState) -> str:
    """The rules in matching order, the built-in default rule last (as Rules shows them)."""
    return _csv(RULE_COLUMNS, ([getattr(row, column) for column in RULE_COLUMNS]
                               for row in rules_page(state)))
