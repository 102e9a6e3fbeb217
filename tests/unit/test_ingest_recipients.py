"""Recipient verification, pure parts: the relay recipient table and the probe answers' cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from katagate.ingest.recipients import RecipientTable, parse_table
from katagate.ingest.settings import IngestSettings
from katagate.ingest.verify_cache import VerifyCache

TABLE = RecipientTable.of(["bob@example.net", "Carol@Example.NET", "@example.org"])


@pytest.mark.parametrize("recipient", [
    "bob@example.net", "BOB@example.NET", "carol@example.net",  # listed; case ignored
    "anyone@example.org",  # an @domain entry takes any local part
    "anyone@example.com",  # a domain with no entry is not checked (as Postfix)
])
def test_given_a_listed_recipient_or_an_unlisted_domain_then_the_table_passes_it(recipient):
    assert TABLE.check(recipient) is None


@pytest.mark.parametrize("recipient", ["ghost@example.net", "bob+tag@example.net"])
def test_given_an_unlisted_recipient_of_a_listed_domain_then_550_5_1_1(recipient):
    # Given a domain the table names, when a recipient it does not list comes, then 550 5.1.1.
    assert str(TABLE.check(recipient)) == (
        f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown in relay "
        "recipient table")


def test_given_a_table_file_then_comments_empty_lines_and_a_value_column_are_ignored():
    text = "# users\n\nbob@example.net OK\n  @example.org  # whole domain\nCarol@example.net\n"
    assert parse_table(text) == ["bob@example.net", "@example.org", "carol@example.net"]


@pytest.mark.parametrize("line", ["bob", "bob@", "@", "bob@.example.net", "b\x01b@example.net"])
def test_given_a_bad_entry_in_a_table_file_then_the_error_names_its_line(line):
    with pytest.raises(ValueError, match=r"^line 2: not an address or @domain: "):
        parse_table(f"ok@example.net\n{line}\n")


def test_given_a_bad_table_file_then_the_settings_refuse_it_naming_setting_and_line(tmp_path):
    table = tmp_path / "relay_recipients"
    table.write_text("bob@example.net\nnot an entry\n")
    with pytest.raises(ValidationError, match=r"relay_recipients_file\n.*line 2: not an address"):
        IngestSettings(relay_recipients_file=table)
    with pytest.raises(ValidationError, match=r"relay_recipients_file\n.*cannot read"):
        IngestSettings(relay_recipients_file=tmp_path / "missing")


def test_given_entries_in_settings_and_file_then_the_table_holds_both(tmp_path: Path):
    table = tmp_path / "relay_recipients"
    table.write_text("carol@example.net\n")
    settings = IngestSettings(relay_recipients=["bob@example.net"], relay_recipients_file=table)
    assert settings.recipient_table().check("carol@example.net") is None
    assert settings.recipient_table().check("bob@example.net") is None
    assert settings.recipient_table().check("dave@example.net") is not None


def test_a_negative_ttl_longer_than_the_positive_one_is_refused():
    with pytest.raises(ValidationError, match="verify_negative_ttl_s must not exceed"):
        IngestSettings(verify_positive_ttl_s=60, verify_negative_ttl_s=61)


def test_given_answers_then_a_refusal_expires_before_an_acceptance():
    # Given a positive and a negative answer at t=0 (TTLs 100 s and 10 s), then the negative
    # one is forgotten at 10 s, the positive one at 100 s.
    cache = VerifyCache(10, positive_ttl_s=100, negative_ttl_s=10)
    cache.put("Bob@example.net", True, 0.0)
    cache.put("ghost@example.net", False, 0.0)
    assert (cache.get("bob@EXAMPLE.net", 9.9), cache.get("ghost@example.net", 9.9)) == (True, False)
    assert (cache.get("bob@example.net", 10.0), cache.get("ghost@example.net", 10.0)) == (True,
                                                                                         None)
    assert cache.get("bob@example.net", 100.0) is None
    assert len(cache) == 0


def test_given_more_addresses_than_the_size_then_the_least_recently_used_go_first():
    # Given a cache of 3, when a fourth address is put after the first was read again, then
    # the second (least recently used) is gone and the size stays 3.
    cache = VerifyCache(3, positive_ttl_s=100, negative_ttl_s=10)
    for name in ("a", "b", "c"):
        cache.put(f"{name}@example.net", True, 0.0)
    assert cache.get("a@example.net", 1.0) is True
    cache.put("d@example.net", False, 1.0)
    assert len(cache) == 3
    assert [cache.get(f"{n}@example.net", 2.0) for n in "abcd"] == [True, None, True, False]


def test_a_million_random_recipients_keep_the_cache_at_its_size():
    cache = VerifyCache(1000, positive_ttl_s=100, negative_ttl_s=10)
    for i in range(1_000_000):
        cache.put(f"r{i}@example.net", False, 0.0)
    assert len(cache) == 1000
