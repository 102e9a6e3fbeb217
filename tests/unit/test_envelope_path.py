"""ingest/envelope.py's `path_address` gives exactly aiosmtpd's MAIL and RCPT parse (then keeps
only the mailbox the client wrote)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from katagate.ingest.envelope import mailbox_as_written, path_address

ARGS = [
    "", "<>", "<> SIZE=100", "<bob@example.net>", "<bob@example.net> SIZE=4096 BODY=8BITMIME",
    "bob@example.net", "bob@example.net SIZE=1", "  <bob@example.net>", "<BOB@Example.NET>",
    '<"a b"@example.org>', '<"ab"@example.org>', '<"a\\"b"@example.org>', '<"a>b"@example.org>',
    "<a b@example.org>", "<x(y)@example.org>", "<a\\b@example.org>", '<a"b@example.org>',
    '<"a"b@example.org>', "<@a,@b:c@example.org>", "<@a:c@example.org>", "<bob@[192.0.2.1]>",
    "<bob@[IPv6:2001:db8::1]>", "<bob@example.net", "bob@example.net>", "<<bob@example.net>>",
    "<bob>", "<@example.net>", "<bob@>", "<bob@@example.net>", "<bob@exa mple.net>",
    "<bøb@exämple.net> SMTPUTF8", "<bob@example.net>\x00", "<bob\r\n@example.net>", "<;>",
    "<a@b@c>", "<bob@example.net>>", "<" + "a" * 64 + "@example.org>",
    "<" + "a" * 65 + "@example.org>", "<" + "a" * 300 + "@example.org>", "<.bob@example.net>",
    "<bob.@example.net>", "<bob..x@example.net>", "<(c)bob@example.net>", "<bob@example.net(c)>",
    "bob", "@", "<", ">", '"', '<"unterminated@example.net>', "<bob@example.net> <eve@x>",
    # RFC 2047 encoded words, which the email package decodes (found by review).
    "<=?us-ascii?q?a?=@example.org>", "<a@=?us-ascii?q?b?=>", "<=?x?q?a@b> ?=@evil>",
    "<=?utf-8?q?ceo=40bank.example?=@evil.example>", "<a@b.c> X=?y",
]


def aiosmtpd_then_as_written(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    """What ingest did before: aiosmtpd's own parse, then the as-written check."""
    smtp = SMTP.__new__(SMTP)
    smtp.local_part_limit = local_part_limit
    address, rest = smtp._getaddr(arg)
    if address and not mailbox_as_written(arg, address):
        return None, None
    return address, rest


@pytest.mark.parametrize("local_part_limit", [0, 64])
@pytest.mark.parametrize("arg", ARGS)
def test_given_a_path_then_it_parses_as_aiosmtpd_does(arg: str, local_part_limit: int) -> None:
    # Some paths ("<", a lone quote) make the email package raise: the same error either way
    # (aiosmtpd answers it with its generic 500).
    assert outcome(path_address, arg, local_part_limit) == outcome(
        aiosmtpd_then_as_written, arg, local_part_limit)


def outcome(parse: Callable[[str, int], object], arg: str, limit: int) -> object:
    try:
        return parse(arg, limit)
    except Exception as exc:
        return type(exc)



# Pieces of paths: what a dot-atom takes, what ends one, white space of every kind, comments
# and the parameters that follow a path.
PIECES = ["a", "B", "0", "bob", "x-y", "+", "%", "!", "=", "{", "~", "'", ".", "..", "@", "@@",
          "<", ">", "<>", "(", ")", "(c)", '"', "\\", " ", "  ", "\t", "\x0b", "\x0c", "\r",
          "\n", "\x00", "ø", "\u2028", "\xa0", ":", ",", ";", "[", "]", "[192.0.2.1]",
          "example.org", " SIZE=100", " BODY=8BITMIME", " (c) SIZE=1", "\tSIZE=1", "?", "=?",
          "?=", "=?us-ascii?q?a?="]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.sampled_from([0, 3, 64]))
def test_given_any_path_then_the_fast_path_answers_as_aiosmtpd(pieces: list[str],
                                                                local_part_limit: int) -> None:
    # Most are `<`, a dot-atom, `@`, a dot-atom, `>` and something after: the fast path's
    # inputs and their near misses.
    arg = "<" + "".join(pieces) if pieces[:1] != ["<"] else "".join(pieces)
    assert outcome(path_address, arg, local_part_limit) == outcome(
        aiosmtpd_then_as_written, arg, local_part_limit)


ATOMS = ["a", "Bob", "0", "x-y", "+", "%", "!", "=", "{", "~", "'", ".", "", "ø", " ", "(c)",
         '"', "\\", "[1]", "@", "?", "=?", "?=", "=?us-ascii?q?a?=", "=?utf-8?b?YQ==?="]
AFTER = ["", " ", "  ", "\t", "\x0b", "\x0c", "\x1c", "\r", "\n", "\xa0", "\u2028", "(c)", "x",
         ">", "<", "?=", "=?x?q?a?="]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=4),
       st.lists(st.sampled_from(ATOMS), min_size=1, max_size=4),
       st.lists(st.sampled_from(AFTER), max_size=3), st.sampled_from(["", "SIZE=1", "(c)"]),
       st.sampled_from([0, 3, 64]))
def test_given_a_plain_path_and_what_follows_then_the_fast_path_answers_as_aiosmtpd(
        local: list[str], domain: list[str], after: list[str], parameters: str,
        local_part_limit: int) -> None:
    arg = f"<{''.join(local)}@{''.join(domain)}>{''.join(after)}{parameters}"
    assert outcome(path_address, arg, local_part_limit) == outcome(
        aiosmtpd_then_as_written, arg, local_part_limit)
