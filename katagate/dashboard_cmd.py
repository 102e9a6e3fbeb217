"""`katagate dashboard describe|write|check`: the Grafana dashboard's structure (rows, panels,
units, queries) as Markdown, kept in the README's Operations section the way `katagate
schemas check` keeps the JSON Schemas: the dashboard JSON is the source, the README a view."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from katagate.schemas.errors import KatagateError

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "katagate.json"
README = ROOT / "README.md"
BEGIN = ("<!-- dashboard: generated from deploy/grafana/dashboards/katagate.json by "
         "`katagate dashboard write`; do not edit by hand -->")
END = "<!-- end of dashboard -->"

# The Grafana unit ids the dashboard uses, as a reader says them.
UNITS = {
    "mps": "messages/s", "cps": "counts/s", "reqps": "requests/s", "recps": "records/s",
    "ops": "operations/s", "Bps": "bytes/s", "bytes": "bytes", "s": "seconds",
    "percentunit": "percent", "short": "count", "none": "state",
}
KINDS = {
    "timeseries": "time series", "stat": "stat", "gauge": "gauge", "bargauge": "bar gauge",
    "state-timeline": "state timeline",
}


class DashboardSectionMissing(KatagateError):
    """The README has no generated dashboard section (its two marker lines)."""


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def rows(dashboard: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The panels grouped under their rows, in the dashboard's order (top to bottom)."""
    grouped: list[tuple[str, list[dict[str, Any]]]] = []
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    for panel in panels:
        if panel["type"] == "row":
            grouped.append((panel["title"], list(panel.get("panels", []))))
        elif not grouped:
            grouped.append(("", [panel]))
        else:
            grouped[-1][1].append(panel)
    return grouped


def describe(dashboard: dict[str, Any]) -> str:
    lines = [f"Dashboard **{dashboard['title']}** (uid `{dashboard['uid']}`): "
             f"{len(rows(dashboard))} rows, "
             f"{sum(len(p) for _, p in rows(dashboard))} panels."]
    for title, panels in rows(dashboard):
        lines += ["", f"#### {title}", ""]
        for panel in panels:
            unit = panel["fieldConfig"]["defaults"].get("unit", "")
            kind = KINDS.get(panel["type"], panel["type"])
            lines.append(f"- **{panel['title']}** ({kind}, {UNITS.get(unit, unit)} `{unit}`)")
            for target in panel.get("targets", []):
                legend = target.get("legendFormat", "")
                label = "" if legend in ("", "__auto") else f"{legend}: "
                lines.append(f"  - {label}`{target['expr']}`")
    return "\n".join(lines) + "\n"


def with_section(readme: str, rendered: str) -> str:
    """The README with its generated dashboard section replaced by `rendered`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise DashboardSectionMissing(f"README has no section between {BEGIN!r} and {END!r}")
    return readme[:start] + BEGIN + "\n\n" + rendered + "\n" + readme[end:]


def is_current(readme: str, dashboard: dict[str, Any]) -> bool:
    return with_section(readme, describe(dashboard)) == readme


def register(commands: Any) -> None:
    parser = commands.add_parser("dashboard",
                                 help="the Grafana dashboard's structure as Markdown")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, run, help_ in (
        ("describe", _describe, "print rows, panels, units and queries as Markdown"),
        ("write", _write, "update the README's Operations section"),
        ("check", _check, "fail if the README's Operations section is stale"),
    ):
        action = actions.add_parser(name, help=help_)
        action.add_argument("--dashboard", type=Path, default=DASHBOARD)
        action.add_argument("--readme", type=Path, default=README)
        action.set_defaults(run=run)


def _describe(args: argparse.Namespace) -> int:
    print(describe(load(args.dashboard)), end="")
    return 0


def _write(args: argparse.Namespace) -> int:
    readme = args.readme.read_text()
    args.readme.write_text(with_section(readme, describe(load(args.dashboard))))
    print(f"wrote the dashboard's structure into {args.readme}")
    return 0


def _check(args: argparse.Namespace) -> int:
    if is_current(args.readme.read_text(), load(args.dashboard)):
        return 0
    print(f"stale: the dashboard section of {args.readme}; run `katagate dashboard write`")
    return 1
