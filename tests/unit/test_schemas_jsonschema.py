"""Committed JSON Schemas match the models (regenerate: python -m schemas.jsonschema write)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from katagate.schemas import CURRENT_VERSIONS
from katagate.schemas.jsonschema import DEFAULT_DIR, check, generate, main, write


def test_given_the_committed_schemas_then_none_is_stale() -> None:
    assert check(DEFAULT_DIR) == [], "run: python -m schemas.jsonschema write"


def test_given_the_generated_files_then_one_per_current_version_plus_the_union() -> None:
    expected = {f"{t}.v{v}.json" for t, v in CURRENT_VERSIONS.items()} | {"events.json"}
    files = generate()
    assert set(files) == expected
    assert "scan.verdict.v2.json" in files
    union = json.loads(files["events.json"])
    assert union["discriminator"]["propertyName"] == "type"
    assert all(text.endswith("}\n") for text in files.values())


def test_given_a_directory_when_written_then_check_is_clean(tmp_path: Path) -> None:
    write(tmp_path)
    assert check(tmp_path) == []


def test_given_stale_missing_and_extra_files_then_check_names_them(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "mail.received.v1.json").write_text("{}\n")
    (tmp_path / "ndr.sent.v1.json").unlink()
    (tmp_path / "mail.received.v0.json").write_text("{}\n")
    assert check(tmp_path) == ["mail.received.v0.json", "mail.received.v1.json", "ndr.sent.v1.json"]
    write(tmp_path)
    assert check(tmp_path) == []


def test_given_the_command_line_then_exit_codes_say_whether_up_to_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["write", str(tmp_path)]) == 0
    assert main(["check", str(tmp_path)]) == 0
    assert main([]) == 2
