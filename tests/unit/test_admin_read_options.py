"""The reading commands' options become the projector's query, without a broker: every filter
under the projector's name, none clobbering the command's own arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from katagate.admin.backup import resend_request
from katagate.admin.projector_reader import ProjectorReader, ProjectorUnavailable
from katagate.admin_read import query
from katagate.backup_cmd import EXTRA, resend_recorded
from katagate.cli import build_parser
from katagate.projector.guard import token_file
from katagate.up_cmd import _projector_token


def test_given_every_filter_then_the_query_has_the_projectors_names():
    args = build_parser().parse_args([
        "messages", "search", "--from", "<>", "--to", "*@example.net", "--subject", "invoice",
        "--client", "192.0.2.1", "--since", "2026-12-01T00:00:00Z", "--until",
        "2026-12-02T00:00:00Z", "--verdict", "skipped:size_limit", "--action", "deleted",
        "--status", "bounced", "--limit", "5", "--order", "asc", "--cursor", "abc"])
    # `--action` filters; it never replaces the command's action
    assert (args.command, args.action) == ("messages", "search")
    assert query(args) == {
        "from": "<>", "to": "*@example.net", "subject": "invoice", "client": "192.0.2.1",
        "since": "2026-12-01T00:00:00Z", "until": "2026-12-02T00:00:00Z",
        "verdict": "skipped:size_limit", "action": "deleted", "status": "bounced",
        "limit": "5", "order": "asc", "cursor": "abc"}


def test_given_no_filter_then_nothing_is_asked_beyond_the_defaults():
    args = build_parser().parse_args(["queue", "list"])
    assert {k: v for k, v in query(args).items() if v is not None} == {}


def test_the_backup_listing_adds_detect_and_state():
    args = build_parser().parse_args(["backup", "list", "--detect", "eicar", "--state", "held",
                                      "--from", "partner@example.org"])
    asked = {k: v for k, v in query(args, *EXTRA).items() if v is not None}
    assert asked == {"detect": "eicar", "state": "held", "from": "partner@example.org"}


@pytest.mark.parametrize("argv", [["backup", "resend", "MSG00000001", "--to"],
                                  ["queue", "flush", "MSG00000001"]])
def test_a_malformed_command_line_is_a_usage_error(argv):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2


def test_given_katagate_up_then_the_cli_has_its_own_projector_token_in_a_private_file(
        tmp_path: Path):
    # When `katagate up` makes the CLI's token (and again, as at every start)
    holder = _projector_token(tmp_path, {}, "cli")
    kept = holder.read_text()
    assert _projector_token(tmp_path, {}, "cli") == holder
    # Then it lies in <state>/cli/projector-token, mode 0600, in a 0700 folder; it opens the
    # projector under the name "cli", and a second start keeps it
    assert holder == tmp_path / "cli" / "projector-token"
    assert holder.stat().st_mode & 0o777 == 0o600
    assert holder.parent.stat().st_mode & 0o077 == 0
    record = token_file(tmp_path / "projector" / "tokens.json").match(kept.strip())
    assert record is not None
    assert record.name == "cli"
    assert holder.read_text() == kept
    # The console's token is another one, of its own name
    console = _projector_token(tmp_path, {}, "console").read_text().strip()
    assert console != kept.strip()
    assert token_file(tmp_path / "projector" / "tokens.json").match(kept.strip()) is not None


def test_given_original_recipients_with_terminal_controls_then_resend_prints_them_inert():
    # Given a copy whose envelope recipients hold a C1 CSI (8-bit ESC[) and a bidi override,
    # which ingest lets through in a UTF-8 address
    row = {"message_id": "m0000001", "envelope_from": "a@example.org",
           "recipients": ["\x9b31mbob@example.net", "eve\u202egro.elpmaxe@x.example"],
           "backup": {"state": "held"}, "sha256": "0" * 64,
           "location": {"topic": "t.backup", "partition": 0, "offsets": [1],
                        "chunk_bytes": 1024}}
    event = resend_request(row, "cli:root", "", None, datetime.now(UTC))
    # When the CLI says what it recorded
    said = resend_recorded(event)
    # Then neither reaches the administrator's terminal
    assert "\x9b" not in said
    assert "\u202e" not in said
    assert "\ufffd31mbob@example.net" in said


@pytest.mark.parametrize("url", ["http://projector.example.net:8080", "http://10.0.0.5:8080",
                                 "http://[2001:db8::1]:8080", "ftp://127.0.0.1/"])
def test_given_a_projector_url_that_would_send_the_token_in_clear_then_it_is_refused(
        url: str) -> None:
    # Given a plain-HTTP URL of another host (or not HTTP at all)
    # Then the reader refuses it before any request, naming the setting
    with pytest.raises(ProjectorUnavailable, match="KATAGATE_PROJECTOR_URL"):
        ProjectorReader(url, "unused")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:8080",
                                 "http://[::1]:8080", "https://projector.example.net"])
def test_given_a_loopback_or_https_projector_url_then_it_is_taken(url: str) -> None:
    assert ProjectorReader(url, "unused").url == url
