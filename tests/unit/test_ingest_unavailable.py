"""on_unavailable = tempfail at SMTP, pure: 451 4.7.0 while KATA is not connected or its
quarantine is full, for the rules that say so; nothing else is refused."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from katagate.ingest import replies
from katagate.ingest.unavailable import (
    MAX_SCAN_BYTES,
    Usage,
    evolve_usage,
    quarantine_full,
    tempfail,
)
from katagate.schemas import (
    DEFAULT_RULE,
    ControlState,
    KataSettings,
    QuarantineUsageRecorded,
    Rule,
    RuleKata,
)
from tests.unit.fixtures.events import sample_events

MIB = 1024 * 1024


def state(connection: str = "connected", protection: bool = True, **settings) -> ControlState:
    kata = KataSettings(central_node_address=IPv4Address("192.0.2.7"),
                        **{"on_unavailable": "tempfail", **settings})
    return ControlState(settings=kata, protection_enabled=protection, connection=connection,
                        version=3)


def rule(on_unavailable: str | None = None, enabled: bool = True) -> Rule:
    return Rule(rule_id="r1", name="r1", position=0,
                kata=RuleKata(enabled=enabled, on_unavailable=on_unavailable))


ROOMY = Usage(0, 0, known=True)


@pytest.mark.parametrize("connection", ["not_configured", "connecting", "awaiting_confirmation",
                                        "rejected", "certificate_mismatch", "unreachable",
                                        "error"])
def test_given_tempfail_when_not_connected_then_451_kata_not_connected(connection):
    reply = tempfail(state(connection), DEFAULT_RULE, ROOMY)
    assert reply == replies.KATA_NOT_CONNECTED
    assert str(reply).startswith("451 4.7.0 KATA not connected")


def test_given_tempfail_when_connected_with_room_then_accepted():
    assert tempfail(state(), DEFAULT_RULE, ROOMY, 10 * MIB) is None


@pytest.mark.parametrize(("usage", "size"), [
    (Usage(0, 5000, known=True), 0),  # every place taken
    (Usage(1024 * MIB - 10, 1, known=True), 11),  # the bytes would go over
    (Usage(1024 * MIB, 1, known=True), 0),  # at RCPT: not one octet more fits
])
def test_given_tempfail_when_the_quarantine_is_full_then_451_quarantine_full(usage, size):
    reply = tempfail(state(), DEFAULT_RULE, usage, size)
    assert reply == replies.KATA_QUARANTINE_FULL
    assert str(reply).startswith("451 4.7.0 KATA Quarantine full")


def test_the_limits_at_plus_minus_one():
    limits = state(quarantine_max_messages=2, quarantine_max_bytes=MIB)
    assert not quarantine_full(Usage(MIB - 10, 1, known=True), limits, 10)
    assert quarantine_full(Usage(MIB - 10, 1, known=True), limits, 11)
    assert quarantine_full(Usage(0, 2, known=True), limits, 1)
    # Usage never read: not called full (admission keeps what ingest let through).
    assert not quarantine_full(Usage(MIB, 2), limits, 1)


@pytest.mark.parametrize(("given", "the_rule"), [
    ({"on_unavailable": "skip"}, DEFAULT_RULE),  # the default: fail open, Skipped later
    ({"on_unavailable": "hold"}, DEFAULT_RULE),  # kept by admission instead
    ({"on_unavailable": "tempfail"}, rule("skip")),  # the rule's own choice wins
])
def test_given_skip_or_hold_then_never_refused_at_smtp(given, the_rule):
    assert tempfail(state("unreachable", **given), the_rule, Usage(0, 5000, known=True)) is None


def test_given_a_global_skip_and_a_rule_that_says_tempfail_then_that_rules_mail_gets_451():
    assert tempfail(state("unreachable", on_unavailable="skip"), rule("tempfail"),
                    ROOMY) == replies.KATA_NOT_CONNECTED


@pytest.mark.parametrize(("protection", "the_rule"), [(False, DEFAULT_RULE),
                                                      (True, rule(enabled=False))])
def test_given_kata_protection_switched_off_then_delivered_unscanned_never_refused(
        protection, the_rule):
    # A deliberate choice, not "unavailable".
    assert tempfail(state("not_configured", protection), the_rule, ROOMY) is None


def test_given_tempfail_a_message_over_the_scan_cap_is_refused_for_good():
    # No retry could ever be scanned: 552, so the sender's own MTA returns it to its sender.
    reply = tempfail(state(), DEFAULT_RULE, ROOMY, MAX_SCAN_BYTES + 1)
    assert reply == replies.OVER_SCAN_LIMIT
    assert str(reply).startswith("552 5.3.4 ")
    assert tempfail(state(), DEFAULT_RULE, ROOMY, MAX_SCAN_BYTES) is None


def test_given_ledger_events_then_ingest_learns_nothing_from_them_only_from_a_usage_record():
    # Given every sample event but the usage record: ingest reads no ledger (docs/SECURITY.md)
    samples = sample_events()
    ledger_only = [e for e in samples if not isinstance(e, QuarantineUsageRecorded)]
    usage = Usage()
    for event in ledger_only:
        usage = evolve_usage(usage, event)
    # Then the usage is still unknown: an empty quarantine, never called full
    assert usage == Usage()
    # When the admission's usage record comes in, Then it is the usage
    [record] = [e for e in samples if isinstance(e, QuarantineUsageRecorded)]
    assert evolve_usage(usage, record) == Usage(5_300_000, 5000, known=True)
