"""RFC 3464 NDRs: structure, the fields a sender's MTA reads, and no injection through inputs."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest

from katagate.decider.ndr import build_ndr, should_send_ndr

ORIGINAL = (b"Return-Path: <alice@example.org>\r\nFrom: Alice <alice@example.org>\r\n"
            b"To: bob@example.net\r\nSubject: Invoice\r\nMessage-ID: <m1@example.org>\r\n\r\n")
ARRIVAL = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
NOW = ARRIVAL + timedelta(minutes=12)


def _ndr(**overrides: Any) -> bytes:
    values: dict[str, Any] = {
        "original": ORIGINAL, "envelope_from": "alice@example.org",
        "recipients": ["bob@example.net"], "reporting_mta": "gw.example.net",
        "reason": "KATA detected a threat", "status": "5.7.1", "diagnostic": None,
        "arrival": ARRIVAL, "now": NOW, "message_id": "M0123456789", "dsn_id": "dsn-0001",
    }
    values.update(overrides)
    return build_ndr(**values)


def _parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_given_a_kata_reject_then_the_ndr_is_a_delivery_status_report():
    raw = _ndr()
    ndr = _parse(raw)
    assert ndr.get_content_type() == "multipart/report"
    assert ndr.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in ndr.iter_parts()] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert ndr["From"].addresses[0].addr_spec == "MAILER-DAEMON@gw.example.net"
    assert ndr["To"].addresses[0].addr_spec == "alice@example.org"
    assert ndr["Auto-Submitted"] == "auto-replied"
    assert ndr["Message-ID"] == "<dsn-0001@gw.example.net>"
    assert ndr["X-Katagate-Message-Id"] == "M0123456789"
    assert ndr["Date"].datetime == NOW
    assert not ndr.defects
    assert all(not p.defects for p in ndr.walk())
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only


def test_given_a_kata_reject_then_the_human_part_says_why_without_details():
    human = next(_parse(_ndr()).iter_parts())
    text = human.get_content()
    assert "KATA" in text
    assert "detected a threat" in text
    assert "Reason: KATA detected a threat" in text
    assert "M0123456789" in text
    assert "<bob@example.net>" in text


def test_given_the_report_then_per_message_and_per_recipient_fields_are_there():
    raw = _ndr(recipients=["bob@example.net", "carol@example.net"],
               diagnostic="550 5.7.1 rejected by policy", status="5.7.1")
    status = list(_parse(raw).iter_parts())[1]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    assert len(blocks) == 3
    per_message, *per_recipient = blocks
    assert per_message["Reporting-MTA"] == "dns; gw.example.net"
    assert per_message["Arrival-Date"] == "Sat, 01 Mar 2025 09:00:00 +0000"
    assert [r["Final-Recipient"] for r in per_recipient] == [
        "rfc822; bob@example.net", "rfc822; carol@example.net"]
    for block in per_recipient:
        assert block["Action"] == "failed"
        assert block["Status"] == "5.7.1"
        assert block["Diagnostic-Code"] == "smtp; 550 5.7.1 rejected by policy"


def test_given_a_delivery_failure_then_the_text_and_diagnostic_say_so():
    raw = _ndr(kind="delivery_failed", status="4.4.1", reason="next hop unreachable for 5 days",
               diagnostic="connection refused by mx.example.net:25")
    human, status, _ = _parse(raw).iter_parts()
    assert "KATA" not in human.get_content()
    assert "could not be delivered" in human.get_content()
    recipient = status.get_payload()[1]
    assert recipient["Status"] == "4.4.1"
    assert recipient["Diagnostic-Code"] == "X-Katagate; connection refused by mx.example.net:25"


def test_given_the_original_headers_then_they_are_returned_verbatim_without_the_body():
    raw = _ndr(original=ORIGINAL + b"secret body\r\n")
    returned = list(_parse(raw).iter_parts())[2]
    assert ORIGINAL.rstrip(b"\r\n") + b"\r\n--" in raw
    assert b"secret body" not in raw
    assert returned.get_content_type() == "text/rfc822-headers"


CUT_NOTE = b"X-Katagate-Note: original headers cut at 16 KiB"


def _headers_part(raw: bytes) -> bytes:
    """The text/rfc822-headers part's content, as sent."""
    head, _, rest = raw.partition(b"Content-Type: text/rfc822-headers\r\n")
    assert head, "no text/rfc822-headers part"
    content = rest.split(b"\r\n\r\n", 1)[1]
    return content[: content.rindex(b"\r\n--")]


def _folded_fields(total: int) -> list[bytes]:
    """Header fields of about 300 octets, each folded over three lines, `total` octets in all."""
    fields: list[bytes] = []
    while sum(map(len, fields)) < total:
        i = len(fields)
        fields.append(b"X-Filler-%d: %s\r\n\t%s\r\n %s\r\n" % (i, b"a" * 90, b"b" * 90, b"c" * 90))
    return fields


def test_given_a_200_kib_header_block_then_the_ndr_returns_at_most_16_kib_of_it():
    # Given an attacker's message whose header section is 200 KiB (a forged envelope sender
    # would get it reflected), when the NDR is built, then at most 16 KiB of it goes back.
    fields = _folded_fields(200 * 1024)
    raw = _ndr(original=b"".join(fields) + b"\r\nbody\r\n")
    part = _headers_part(raw)
    kept, note = part.rsplit(b"\r\n", 1)
    assert note == CUT_NOTE
    assert len(kept) + 2 <= 16 * 1024  # measured on the CRLF bytes that go out
    assert len(raw) < 20 * 1024
    assert _parse(raw).defects == []


def test_given_folded_fields_over_the_bound_then_the_cut_falls_between_fields_never_inside_one():
    # Given folded fields over 16 KiB, when cut, then only whole fields (every continuation line
    # with its field) are kept, and no further whole field would have fitted.
    fields = _folded_fields(200 * 1024)
    kept = _headers_part(_ndr(original=b"".join(fields) + b"\r\n"))[: -len(CUT_NOTE)]
    whole = len(kept.split(b"\r\nX-Filler-"))
    assert kept == b"".join(fields[:whole])
    assert len(kept) + len(fields[whole]) > 16 * 1024


def test_given_a_first_field_longer_than_the_bound_then_only_the_note_goes_back():
    # Given one folded field of 20 KiB, when cut, then none of it is returned, only the note.
    field = b"X-Huge: " + b"\r\n ".join([b"z" * 70] * 280) + b"\r\n"
    assert _headers_part(_ndr(original=field + b"Subject: x\r\n\r\n")) == CUT_NOTE


def test_given_a_message_that_starts_with_its_empty_line_then_no_body_line_is_returned():
    part = _headers_part(_ndr(original=b"\r\nSubject: body text\r\n\r\nmore\r\n"))
    assert part == b""


def test_given_bare_line_endings_then_the_returned_headers_are_crlf_only():
    raw = _ndr(original=b"Subject: a\nX-One: b\rX-Two: c\r\n\nbody\n")
    assert _headers_part(raw) == b"Subject: a\r\nX-One: b\r\nX-Two: c"
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize("reason", [
    "threat\r\nBcc: evil@attacker.example", "line\nX-Injected: 1", "a\rb", "tab\tand\x00nul"])
def test_given_line_breaks_in_the_reason_then_they_become_spaces(reason):
    raw = _ndr(reason=reason, diagnostic=f"550 {reason}")
    ndr = _parse(raw)
    assert not any(name.lower() in ("bcc", "x-injected") for part in ndr.walk()
                   for name in part)
    assert b"\r\nBcc:" not in raw
    assert b"\r\nX-Injected" not in raw
    assert b"\x00" not in raw
    recipient = list(ndr.iter_parts())[1].get_payload()[1]
    assert "\n" not in recipient["Diagnostic-Code"]


@pytest.mark.parametrize("field", ["recipients", "envelope_from"])
@pytest.mark.parametrize("address", [
    "bob@example.net\r\nBcc: evil@attacker.example", "bob@example.net>\r\nX: y", "a\x00@b", ""])
def test_given_line_breaks_in_addresses_then_the_ndr_is_refused(field, address):
    value: Any = [address] if field == "recipients" else address
    with pytest.raises(ValueError, match=r"address|null sender"):
        _ndr(**{field: value})


@pytest.mark.parametrize(("field", "value"), [
    ("reporting_mta", "gw.example.net\r\nX: y"), ("reporting_mta", "bad host"),
    ("status", "2.0.0"), ("status", "5.7.1\r\nX: y"), ("message_id", "a b"),
    ("dsn_id", "x>\r\n"), ("recipients", []), ("now", datetime(2025, 1, 1)),
])
def test_given_malformed_inputs_then_the_ndr_is_refused(field, value):
    with pytest.raises(ValueError, match=r"must|needs"):
        _ndr(**{field: value})


def test_given_non_ascii_recipients_then_they_are_escaped_in_the_report():
    raw = _ndr(recipients=["jörg@exämple.org", "ä+b=c@example.org", "a+b=c@example.org",
                           '"john doe"@example.org'],
               envelope_from="ñandú@example.org")
    ndr = _parse(raw)
    human, status, _ = ndr.iter_parts()
    blocks = status.get_payload()
    assert blocks[1]["Final-Recipient"] == "utf-8; j\\x{F6}rg@ex\\x{E4}mple.org"
    assert blocks[2]["Final-Recipient"] == "utf-8; \\x{E4}\\x{2B}b\\x{3D}c@example.org"
    assert blocks[3]["Final-Recipient"] == "rfc822; a+b=c@example.org"  # VERP stays readable
    assert blocks[4]["Final-Recipient"] == 'rfc822; "john doe"@example.org'
    assert "<jörg@exämple.org>" in human.get_content()
    assert human.get_content_charset() == "utf-8"
    assert "\r\nTo: <ñandú@example.org>\r\n".encode() in raw  # an SMTPUTF8 message (RFC 6532)
    delivery_status = raw.split(b"message/delivery-status", 1)[1].split(b"\r\n--", 1)[0]
    assert delivery_status.isascii()


def test_given_an_original_that_contains_the_boundary_then_another_is_chosen():
    first = _ndr()
    boundary = _parse(first).get_boundary()
    assert boundary
    tricky = ORIGINAL.rstrip(b"\r\n") + b"\r\nX-Trick: --" + boundary.encode() + b"--\r\n\r\n"
    second = _parse(_ndr(original=tricky))
    assert second.get_boundary() != boundary
    assert len(list(second.iter_parts())) == 3


def test_given_the_same_inputs_then_the_same_bytes():
    local = timezone(timedelta(hours=3))
    assert _ndr(now=NOW.astimezone(local)) == _ndr(now=NOW.astimezone(local))


@pytest.mark.parametrize(("sender", "enabled", "expected"), [
    ("", True, (False, "null_sender")),
    ("<>", True, (False, "null_sender")),
    (" <> ", False, (False, "null_sender")),
    ("alice@example.org", False, (False, "ndr_disabled")),
    ("alice@example.org", True, (True, "send")),
    ("MAILER-DAEMON@example.org", True, (True, "send")),  # only <> is exempt (RFC 3464)
    ("postmaster@example.org", True, (True, "send")),
])
def test_should_send_ndr(sender, enabled, expected):
    assert should_send_ndr(sender, enabled) == expected


@pytest.mark.parametrize("name", ["gw_1.internal", "[192.0.2.1]", "localhost"])
def test_given_a_machine_style_reporting_mta_then_it_is_accepted(name):
    ndr = _parse(_ndr(reporting_mta=name))
    assert ndr["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{name}"


def test_given_a_held_message_rejected_unscanned_then_the_ndr_says_it_was_not_scanned():
    # Given hold_outcome = reject and KATA gave no verdict within the response timeout
    raw = _ndr(kind="kata_unscanned", reason="KATA gave no verdict within the response timeout")
    parts = list(_parse(raw).iter_parts())
    text = parts[0].get_content()
    # Then the sender reads that it was not scanned, never that a threat was found
    assert "could not be scanned" in text
    assert "detected a threat" not in text
    assert "no verdict within the response timeout" in text
    assert b"rejected by KATA protection: KATA gave no verdict" in raw
