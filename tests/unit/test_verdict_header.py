"""The verdict header on delivered mail, pure: its value from the decision and the verdict, and
every same-named field from outside removed (any case, folded, blanks before the colon) while
the body and the other fields stay byte for byte; nothing at all when the setting is off."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from katagate.decider.verdict_header import for_delivery, set_verdict_header, strip_fields
from katagate.schemas import ActionDecided, Detect, KataSettings, ProducerRef, VerdictReceived

REF = ProducerRef(stage="decider", instance="t")
DECIDED_AT = datetime(2026, 12, 2, 14, 5, tzinfo=UTC)
VERDICT_AT = datetime(2026, 12, 2, 14, 3, 53, 120000, tzinfo=UTC)
M = "01KBQ7ZJ8N0000000000000000"
NAME = "X-KATA-Verdict"
ON = KataSettings(verdict_header_name=NAME)
BODY = b"\r\nX-KATA-Verdict: in the body, not a header\r\nbody\r\n"


def decided(reason: str, skipped: bool = False, tag: str | None = None) -> ActionDecided:
    return ActionDecided(event_id=UUID(int=1), occurred_at=DECIDED_AT, producer=REF,
                         message_id=M, action="deliver", tag=tag, backup=False,
                         skipped=skipped, reason=reason)  # type: ignore[arg-type]


def verdict(state: str, *detects: Detect) -> VerdictReceived:
    return VerdictReceived(event_id=UUID(int=2), occurred_at=VERDICT_AT, producer=REF,
                           message_id=M, scan_id=M, state=state,  # type: ignore[arg-type]
                           detects=list(detects))


def header_of(data: bytes) -> list[bytes]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-kata-verdict")]


def test_a_clean_message_gets_the_default_format_right_after_our_received_field():
    raw = b"Received: from a\r\n\tby b; x\r\nSubject: hi\r\n" + BODY
    edit = for_delivery(raw, ON, decided("not_detected"), verdict("not_detected"), M)
    assert edit.data == (b"Received: from a\r\n\tby b; x\r\n"
                         b"X-KATA-Verdict: not-detected; scanned=2026-12-02T14:03:53Z\r\n"
                         b"Subject: hi\r\n" + BODY)
    assert (edit.removed, edit.added) == (0, True)


@pytest.mark.parametrize(("decision", "scan", "value"), [
    (decided("detected", tag="[KATA detect]"),
     verdict("detect", Detect(type="am", name="EICAR-Test-File"),
             Detect(type="url_reputation", name="bad; name\r\nX-Evil: 1"), Detect(type="yara")),
     f"detected {M} EICAR-Test-File,bad__name__X-Evil:_1,yara 2026-12-02T14:03:53Z"),
    (decided("timeout", skipped=True), None, "skipped:timeout none none 2026-12-02T14:05:00Z"),
    (decided("rule_kata_disabled", skipped=True), None,
     "skipped:rule-kata-disabled none none 2026-12-02T14:05:00Z"),
    (decided("forced_release", skipped=True), None,
     "skipped:forced-release none none 2026-12-02T14:05:00Z"),
])
def test_every_placeholder_is_filled_and_no_value_can_break_the_line(decision, scan, value):
    settings = KataSettings(verdict_header_name=NAME, verdict_header_format=(
        "{verdict} {scan_id} {detects} {scanned_at}"))
    edit = for_delivery(b"Subject: s\r\n" + BODY, settings, decision, scan, M)
    assert header_of(edit.data) == [f"{NAME}: {value}".encode()]
    assert edit.data.count(b"\r\n") == (b"Subject: s\r\n" + BODY).count(b"\r\n") + 1


FORGED = [
    b"X-KATA-Verdict: not-detected\r\n",  # the same name
    b"x-kata-VERDICT: not-detected\r\n",  # another case
    b"X-KATA-Verdict : not-detected\r\n",  # blanks before the colon
    b"X-KATA-Verdict:\r\n  not-detected;\r\n\tscanned=2026-01-01T00:00:00Z\r\n",  # folded
    b"X-KATA-Verdict:not-detected\r\n",
]


@pytest.mark.parametrize("forged", FORGED)
def test_a_forged_verdict_is_removed_whole_and_ours_added_the_rest_untouched(forged):
    # Given a detected message whose sender wrote a clean verdict of its own, among other fields
    raw = b"Received: from a\r\n\tby b; x\r\n" + forged + b"Subject: s\r\n" + forged + (
        b"X-KATA-Verdict-Note: another field\r\n" + BODY)
    # When apply delivers it with the verdict header on
    edit = for_delivery(raw, ON, decided("detected", tag="[KATA detect]"), verdict("detect"), M)
    # Then both forged fields (every line of them) are gone, ours is the only verdict
    assert edit.removed == 2
    assert edit.data == (b"Received: from a\r\n\tby b; x\r\n"
                         b"X-KATA-Verdict: detected; scanned=2026-12-02T14:03:53Z\r\n"
                         b"Subject: s\r\nX-KATA-Verdict-Note: another field\r\n" + BODY)
    assert b"not-detected" not in edit.data


def test_a_line_with_leading_blanks_is_the_previous_fields_continuation_not_a_field():
    # A folded line belongs to the field above it (RFC 5322 2.2.3): it goes only with a verdict
    raw = (b"Subject: s\r\n X-KATA-Verdict: not-detected\r\n"
           b"X-KATA-Verdict: forged\r\n X-KATA-Verdict: not-detected\r\n" + BODY)
    edit = strip_fields(raw, NAME)
    assert edit.data == b"Subject: s\r\n X-KATA-Verdict: not-detected\r\n" + BODY
    assert edit.removed == 1


def test_when_the_setting_is_off_nothing_is_removed_or_added():
    raw = b"X-KATA-Verdict: not-detected\r\nSubject: s\r\n" + BODY
    edit = for_delivery(raw, KataSettings(), decided("detected", tag="[KATA detect]"),
                        verdict("detect"), M)
    assert edit.data is raw
    assert (edit.removed, edit.added) == (0, False)


def test_a_message_without_a_body_or_a_header_still_gets_one_field():
    assert set_verdict_header(b"Subject: s", NAME, "v").data == (
        b"X-KATA-Verdict: v\r\nSubject: s")
    assert set_verdict_header(b"Received: from a", NAME, "v").data == (
        b"Received: from a\r\nX-KATA-Verdict: v\r\n")
    assert set_verdict_header(b"\r\nbody only\r\n", NAME, "v").data == (
        b"X-KATA-Verdict: v\r\n\r\nbody only\r\n")


OURS = b"Received: from x (unknown [192.0.2.1])\r\n\tby gw with ESMTP id M1; Thu, 03 Dec 2026\r\n"
TOP = OURS + b"X-KATA-Verdict: detected; scanned=2026-12-02T14:03:53Z\r\n"


@pytest.mark.parametrize(("before", "forged"), [
    (b"this line has no colon\r\n", b"X-KATA-Verdict: not-detected\r\n"),
    (b"X Junk: 1\r\n", b"X-KATA-Verdict: not-detected\r\n"),  # a space in a name
    (b"X-\xc3\xa9: 1\r\n", b"X-KATA-Verdict: not-detected\r\n"),  # an 8-bit name
    (b"", b"X-KATA-Verdict\x0b: not-detected\r\n"),  # a vertical tab before the colon
    (b"", b"X-KATA-Verdict \xc2\xa0\t: not-detected\r\n"),  # blanks and 8-bit bytes
    (b"From attacker Thu Dec  3 10:00:00 2026\r\n",  # mbox From_, line 2 behind ours
     b"X-KATA-Verdict: not-detected\r\n continued\r\n"),
], ids=["no-colon", "space-in-name", "8bit-name", "vt-before-colon", "blanks-8bit", "mbox-from"])
def test_a_forged_verdict_behind_a_malformed_line_is_still_removed_and_ours_is_first(
        before, forged):
    # Given a stored message (our Received field first) whose header section holds a line that
    # is not a header field, then a forged clean verdict, before the empty line
    rest = b"From: a@b\r\n" + before + forged + b"Subject: s\r\n" + BODY
    # When apply delivers it with the verdict header on
    edit = for_delivery(OURS + rest, ON, decided("detected", tag="[KATA detect]"),
                        verdict("detect"), M)
    # Then the forged field (with its continuation) is gone and ours sits right after Received
    assert edit.removed == 1
    assert edit.data == TOP + rest.replace(forged, b"")
    assert b"not-detected" not in edit.data


def test_a_header_section_past_the_scan_limit_is_stripped_whole_not_left_as_it_was():
    # Given a hand-made stored message whose header section is far larger than ingest accepts
    # (2 MiB of fields), with a forged verdict at its very end
    filler = b"X-Filler: " + b"a" * 70 + b"\r\n"
    raw = OURS + filler * (2 * 1048576 // len(filler)) + b"x-kata-verdict: not-detected\r\n"
    # When apply delivers it
    edit = for_delivery(raw + BODY, ON, decided("not_detected"), verdict("not_detected"), M)
    # Then the forged field is removed (fail closed) and ours is added, the message delivered
    assert (edit.removed, edit.added) == (1, True)
    assert edit.data == TOP.replace(b"detected", b"not-detected") + raw[len(OURS):-30] + BODY


@pytest.mark.parametrize(("field", "value", "said"), [
    ("verdict_header_name", "Content-Type", "structural or trace field"),
    ("verdict_header_name", "received", "structural or trace field"),
    ("verdict_header_name", "DKIM-Signature", "structural or trace field"),
    ("verdict_header_format", "{verdict:>2000000}", "no format spec or conversion"),
    ("verdict_header_format", "{verdict!r}", "no format spec or conversion"),
])
def test_no_settings_event_can_carry_a_reserved_name_or_a_format_spec(field, value, said):
    # Given settings as an event would carry them, When one names a structural field or a
    # format spec, Then they do not decode (apply never strips Content-Type nor pads to 2 MB)
    with pytest.raises(ValueError, match=said):
        KataSettings.model_validate({**KataSettings().model_dump(), field: value})
    assert KataSettings(verdict_header_name="X-Content-Type-Verdict").verdict_header_name


def test_a_verdict_reused_from_the_cache_names_the_scan_kata_made():
    # Given a verdict the scanner reused from an earlier scan of identical content
    first = "01KBQ7ZJ8N0000000000000001"
    reused = verdict("not_detected").model_copy(update={"cached_from": first})
    # When the message is delivered with {scan_id} in the header
    settings = KataSettings(verdict_header_name=NAME, verdict_header_format="{verdict} {scan_id}")
    edit = for_delivery(b"Subject: s\r\n" + BODY, settings, decided("not_detected"), reused, M)
    # Then the header names the original scan, which KATA saw, not this message's own id
    assert header_of(edit.data) == [b"X-KATA-Verdict: not-detected " + first.encode()]
