"""JSON Schemas for the current version of every event, generated and committed.

Other-language consumers read `schemas/json/`; a unit test runs `check` so a model changed
without regenerating fails CI. Usage: `python -m schemas.jsonschema write|check [DIR]`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from katagate.schemas.union import EVENT_ADAPTER, EVENT_TYPES

DEFAULT_DIR = Path(__file__).parent / "json"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _render(schema: dict[str, Any]) -> str:
    return json.dumps({"$schema": _DIALECT, **schema}, indent=2, sort_keys=True) + "\n"


def generate() -> dict[str, str]:
    """File name -> JSON text: `<type>.v<version>.json` per event, plus `events.json`."""
    files = {"events.json": _render(EVENT_ADAPTER.json_schema())}
    for name, cls in sorted(EVENT_TYPES.items()):
        version = cls.model_fields["schema_version"].default
        files[f"{name}.v{version}.json"] = _render(cls.model_json_schema())
    return files


def write(directory: Path = DEFAULT_DIR) -> None:
    """Make `directory` hold exactly the generated files."""
    directory.mkdir(parents=True, exist_ok=True)
    files = generate()
    for stale in directory.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


def check(directory: Path = DEFAULT_DIR) -> list[str]:
    """Names of files that are stale, missing or extra in `directory`; [] when up to date."""
    files = generate()
    present = {p.name for p in directory.glob("*.json")} if directory.is_dir() else set()
    wrong = [
        name
        for name, text in files.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted(wrong + [name for name in present if name not in files])


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("write", "check") or len(argv) > 2:
        print("usage: python -m schemas.jsonschema write|check [DIR]", file=sys.stderr)
        return 2
    directory = Path(argv[1]) if len(argv) == 2 else DEFAULT_DIR
    if argv[0] == "write":
        write(directory)
        return 0
    wrong = check(directory)
    for name in wrong:
        print(f"out of date: {name}", file=sys.stderr)
    if wrong:
        print("run: python -m schemas.jsonschema write", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
