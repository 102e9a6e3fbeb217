"""Verdicts of the KATA emulator: EICAR (plain and inside MIME), SHA-256 indicators, regexes."""

from __future__ import annotations

import base64
import hashlib
import json
from email.message import EmailMessage

import pytest

from katagate.kata_emulator.errors import EmulatorError
from katagate.kata_emulator.verdicts import EICAR, Rules, RulesFile, parse_rules, scan

TROJAN = b"pretend this is a trojan"


def email_with_attachment(payload: bytes, filename: str = "eicar.com") -> bytes:
    message = EmailMessage()
    message["From"] = "a@example.org"
    message["To"] = "b@example.org"
    message["Subject"] = "hello"
    message.set_content("see attached")
    message.add_attachment(payload, maintype="application", subtype="octet-stream",
                           filename=filename)
    return message.as_bytes()


def rules() -> Rules:
    return parse_rules({
        "sha256": [{"sha256": hashlib.sha256(TROJAN).hexdigest(), "type": "am",
                    "name": "Trojan.Test"}],
        "patterns": [{"regex": r"evil-macro-\d+", "name": "Macro.Test"}],
    })


def test_plain_eicar_is_an_am_detect():
    # Given the EICAR test string as the whole object / When scanned
    detects = scan(EICAR, Rules())
    # Then one detect of type am named EICAR-Test-File
    assert [(d.detect_type, d.threat_name) for d in detects] == [("am", "EICAR-Test-File")]


def test_eicar_as_a_base64_mime_attachment_is_found():
    raw = email_with_attachment(EICAR)
    assert EICAR not in raw  # it travels base64-encoded
    assert base64.b64encode(EICAR)[:20] in raw
    detects = scan(raw, Rules())
    assert [(d.detect_type, d.threat_name) for d in detects] == [("am", "EICAR-Test-File")]
    assert "eicar.com" in detects[0].details


def test_sha256_indicator_of_the_object_and_of_an_attachment():
    assert [(d.detect_type, d.threat_name) for d in scan(TROJAN, rules())] == [
        ("am", "Trojan.Test")]
    detects = scan(email_with_attachment(TROJAN, "invoice.exe"), rules())
    assert [(d.detect_type, d.threat_name) for d in detects] == [("am", "Trojan.Test")]


def test_regex_gives_a_yara_detect_by_default():
    detects = scan(b"...evil-macro-42...", rules())
    assert [(d.detect_type, d.threat_name) for d in detects] == [("yara", "Macro.Test")]


def test_clean_content_is_not_detected():
    assert scan(b"just a letter", rules()) == []
    assert scan(email_with_attachment(b"a harmless pdf"), rules()) == []


def test_a_broken_message_is_still_scanned_whole():
    broken = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" + EICAR
    assert [d.threat_name for d in scan(broken, Rules())] == ["EICAR-Test-File"]


@pytest.mark.parametrize(("data", "word"), [
    ({"sha256": [{"sha256": "zz", "name": "x"}]}, "64 hex"),
    ({"patterns": [{"regex": "(", "name": "x"}]}, "bad regex"),
    ({"patterns": [{"regex": "a", "name": "x", "type": "virus"}]}, "'type' must be one of"),
    ({"patterns": [{"regex": "a"}]}, "'name'"),
    ({"other": []}, "expected an object"),
])
def test_bad_rules_are_refused_naming_the_entry(data, word):
    with pytest.raises(EmulatorError, match=word):
        parse_rules(data)


def test_rules_file_is_reread_when_it_changes(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"patterns": [{"regex": "one", "name": "One"}]}))
    source = RulesFile(path)
    assert [d.threat_name for d in scan(b"one two", source())] == ["One"]
    path.write_text(json.dumps({"patterns": [{"regex": "two", "name": "Two"}]}))
    import os
    os.utime(path, ns=(1, 10**18))  # a different mtime even on a coarse clock
    assert [d.threat_name for d in scan(b"one two", source())] == ["Two"]
    path.write_text("{not json")
    os.utime(path, ns=(1, 2 * 10**18))
    assert [d.threat_name for d in scan(b"one two", source())] == ["Two"]  # previous kept
