"""`katagate config check [FILE]`: exit 0 with one line, or exit 2 with every problem of the
file listed, one a line, each naming its section and key."""

from __future__ import annotations

import re

import pytest

from katagate.cli import main

BAD = """\
[ingst]
port = 2525

[ingest]
max_mesage_bytes = 1048576
port = 70000

[kafka]
raw_retention_ms = 86400000   # one day

[decider]
retry_period_s = 172800       # two days
"""


@pytest.fixture(autouse=True)
def no_config_in_env(monkeypatch):
    monkeypatch.setenv("KATAGATE_CONFIG", "")  # empty: no file; restored after the test
    monkeypatch.delenv("KATAGATE_RAW_RETENTION_MS", raising=False)


def test_given_several_problems_then_exit_2_listing_every_one(tmp_path, capsys):
    path = tmp_path / "katagate.toml"
    path.write_text(BAD)
    assert main(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: [ingst]: unknown section; did you mean [ingest]?",
        f"{path}: [ingest] max_mesage_bytes: unknown setting; did you mean max_message_bytes?",
        f"{path}: [ingest] port: must be between 0 and 65535 (got 70000)",
        f"{path}: [kafka] raw_retention_ms: 86400000 keeps raw mail 1 days, less than "
        "[decider] retry_period_s (172800 s) plus 2 days (a message's wait for room and for "
        "its scan before its first attempt): must be at least 345600000, or the last delivery "
        "attempts find no bytes to send",
    ]


def test_given_the_shipped_file_then_exit_0_with_one_line(tmp_path, capsys):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "katagate.toml"
    assert main(["config", "check", str(shipped)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert re.fullmatch(rf"ok: {re.escape(str(shipped))}, [1-9][0-9]* settings\n", out)


def test_given_raw_mail_kept_shorter_than_the_retry_period_then_the_decider_does_not_start(
        tmp_path):
    import os
    import subprocess
    import sys

    # Given raw mail kept one day while a delivery is retried for two
    path = tmp_path / "katagate.toml"
    path.write_text("[kafka]\nraw_retention_ms = 86400000\n[decider]\nretry_period_s = 172800\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KATAGATE_")}
    # When the decider is started with that file
    done = subprocess.run([sys.executable, "-m", "katagate", "decider", "run", "--config",
                           str(path)], env=env, capture_output=True, text=True, timeout=30)
    # Then it exits 2 at once, naming both settings
    assert done.returncode == 2
    assert "[kafka] raw_retention_ms: 86400000" in done.stderr
    assert "[decider] retry_period_s (172800 s)" in done.stderr
