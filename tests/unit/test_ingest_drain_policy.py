"""The drain's decisions, pure (ingest/drain_policy.py): what a draining session still answers,
its 421 4.3.2, the line that ends the drain; and that the drain's setting is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from katagate.ingest.drain_policy import DrainEnd, draining_reply, refused_while_draining
from katagate.ingest.settings import IngestSettings

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "EXPN",
            "HELP", "STARTTLS", "XFORWARD")


@pytest.mark.parametrize("command", ["RCPT", "DATA", "NOOP", "QUIT"])
def test_given_a_transaction_begun_then_what_finishes_it_is_answered_as_usual(command):
    assert not refused_while_draining(command, in_transaction=True)


@pytest.mark.parametrize("command", ["MAIL", "RSET", "HELO", "EHLO", "STARTTLS", "VRFY", "EXPN",
                                     "HELP", "XFORWARD"])
def test_given_a_transaction_begun_then_what_starts_or_abandons_work_gets_421(command):
    assert refused_while_draining(command, in_transaction=True)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "QUIT"])
def test_given_no_transaction_then_every_command_but_quit_gets_421(command):
    # Nothing to finish: a new MAIL is new work, and RSET/NOOP on a cached connection is a
    # client asking whether to reuse it
    assert refused_while_draining(command, in_transaction=False)


def test_given_no_transaction_then_quit_still_gets_its_221():
    assert not refused_while_draining("QUIT", in_transaction=False)


def test_the_reply_is_421_4_3_2_naming_the_host_as_the_greeting_does():
    assert str(draining_reply("mx.example.net")) == (
        "421 4.3.2 mx.example.net Service shutting down, try again later")
    assert draining_reply("mx.example.net").kind == "temporary"


def test_the_end_line_counts_finished_and_closed_sessions_and_the_time():
    end = DrainEnd(open_at_start=5, closed_at_bound=2, seconds=30.04)
    assert end.finished == 3
    assert end.line() == ("drain ended after 30.0 s: 3 of 5 sessions finished, 2 closed at "
                          "the bound")


def test_drain_timeout_defaults_to_30_s_within_0_to_600():
    assert IngestSettings().drain_timeout_s == 30.0
    assert IngestSettings(drain_timeout_s=0).drain_timeout_s == 0
    assert IngestSettings(drain_timeout_s=600).drain_timeout_s == 600
    for bad in (-1, 601):
        with pytest.raises(ValidationError, match="drain_timeout_s"):
            IngestSettings(drain_timeout_s=bad)


def test_every_ingest_setting_is_documented_in_the_readme():
    readme = (ROOT / "ingest" / "README.md").read_text()
    missing = [name for name in IngestSettings.model_fields if f"`{name}`" not in readme]
    assert missing == []
