"""Bearer tokens kept hashed (access/tokens.py), as the console and the projector share them:
only digests on disk, mode 0600, a revocation by another process counts at the next check, and
a token handed to another program through a file is made once and kept while valid."""

from __future__ import annotations

import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from katagate.access.tokens import MAX_TOKENS, TokenError, TokenFile, token_digest


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_token_is_kept_as_its_digest_in_a_private_file(tmp_path):
    tokens = TokenFile(tmp_path / "state" / "tokens.json", "kgp_")
    token = tokens.create("script", "2026-01-01T00:00:00+00:00")
    assert token.startswith("kgp_")
    assert len(token) > 40
    text = (tmp_path / "state" / "tokens.json").read_text()
    assert token not in text
    assert json.loads(text)["tokens"][0]["sha256"] == token_digest(token)
    assert mode(tmp_path / "state" / "tokens.json") == 0o600
    assert tokens.match(token) == tokens.records()[0]
    assert tokens.match(token + "x") is None
    assert tokens.match("") is None


def test_names_are_checked_unique_and_bounded(tmp_path):
    tokens = TokenFile(tmp_path / "tokens.json", "kgp_")
    tokens.create("a", "now")
    with pytest.raises(TokenError, match="exists already"):
        tokens.create("a", "later")
    with pytest.raises(TokenError, match=r"name: must be 1\.\.64"):
        tokens.create("no spaces", "now")
    for n in range(MAX_TOKENS - 1):
        tokens.create(f"t{n}", "now")
    with pytest.raises(TokenError, match=f"at most {MAX_TOKENS}"):
        tokens.create("one-more", "now")


def test_a_revocation_by_another_process_counts_at_the_next_check(tmp_path):
    path = tmp_path / "tokens.json"
    server = TokenFile(path, "kgp_")
    token = TokenFile(path, "kgp_").create("script", "now")
    assert server.match(token) is not None  # read and cached
    assert TokenFile(path, "kgp_").revoke("script")  # another process's copy
    assert server.match(token) is None
    assert not server.revoke("script")


def test_a_token_in_a_file_is_made_once_and_remade_when_revoked(tmp_path):
    tokens = TokenFile(tmp_path / "projector" / "tokens.json", "kgp_")
    holder = tmp_path / "console" / "projector-token"
    assert tokens.ensure_in_file("console", holder, "now")
    first = holder.read_text().strip()
    assert mode(holder) == 0o600
    assert tokens.match(first) is not None
    # Kept while valid: a restart reuses it.
    assert not tokens.ensure_in_file("console", holder, "later")
    assert holder.read_text().strip() == first
    # Revoked, or the file lost: a new one, and the old one no longer counts.
    tokens.revoke("console")
    assert tokens.ensure_in_file("console", holder, "again")
    second = holder.read_text().strip()
    assert second != first
    holder.unlink()
    assert tokens.ensure_in_file("console", holder, "again")
    assert tokens.match(second) is None
    assert [r.name for r in tokens.records()] == ["console"]


def test_a_token_without_scope_or_expiry_is_written_as_before_and_migrate_rewrites_it(tmp_path):
    # Given a projector token (no scope, no expiry): its record keeps the earlier shape
    tokens = TokenFile(tmp_path / "tokens.json", "kgp_")
    tokens.create("reader", "2026-01-01T00:00:00+00:00")
    assert set(json.loads((tmp_path / "tokens.json").read_text())["tokens"][0]) == {
        "name", "sha256", "created_at"}
    # When migrate gives it a scope, the file says so; a migration changing nothing writes not
    assert tokens.migrate(lambda r: r if r.scope else replace(r, scope="admin")) == 1
    assert json.loads((tmp_path / "tokens.json").read_text())["tokens"][0]["scope"] == "admin"
    before = (tmp_path / "tokens.json").stat().st_ino
    assert tokens.migrate(lambda r: r) == 0
    assert (tmp_path / "tokens.json").stat().st_ino == before
