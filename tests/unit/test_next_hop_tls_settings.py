"""The next hop's TLS settings: the security level from either of its two settings, the CA file
checked at start, and `katagate decider run` refusing a bad one in one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from katagate.cli import main
from katagate.decider.settings import DeciderSettings
from tests.integration.tls_next_hop import issue


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(issue("test CA", ca=True).pem())
    return path


def _refused(**values: object) -> tuple[str, str]:
    """The one setting refused, and why."""
    with pytest.raises(ValidationError) as refused:
        DeciderSettings(**values)  # type: ignore[arg-type]
    [error] = refused.value.errors()
    return ".".join(str(p) for p in error["loc"]), error["msg"]


@pytest.mark.parametrize(("starttls", "level"), [
    (None, "may"), ("never", "none"), ("opportunistic", "may"), ("required", "verify")])
def test_given_next_hop_starttls_then_it_maps_onto_a_level(starttls, level):
    assert DeciderSettings(next_hop_starttls=starttls).next_hop_tls_level == level


@pytest.mark.parametrize("level", ["none", "may", "encrypt", "verify"])
def test_given_a_security_level_then_it_is_in_force(level):
    assert DeciderSettings(next_hop_tls_security_level=level).next_hop_tls_level == level


def test_given_both_settings_naming_one_level_then_accepted_and_different_ones_refused():
    same = DeciderSettings(next_hop_starttls="required", next_hop_tls_security_level="verify")
    assert same.next_hop_tls_level == "verify"
    assert _refused(next_hop_starttls="required", next_hop_tls_security_level="encrypt") == (
        "next_hop_tls_security_level", "Value error, next_hop_starttls = required means level "
        "verify, not encrypt: set only one of them")


def test_given_an_unknown_level_then_refused():
    name, why = _refused(next_hop_tls_security_level="secure")
    assert name == "next_hop_tls_security_level"
    assert "'none', 'may', 'encrypt' or 'verify'" in why


def test_given_a_readable_ca_file_at_verify_then_accepted(ca_file):
    settings = DeciderSettings(next_hop_tls_security_level="verify", next_hop_tls_ca_file=ca_file,
                               next_hop_tls_name="mx.example.net")
    assert (settings.next_hop_tls_ca_file, settings.next_hop_tls_name) == (
        ca_file, "mx.example.net")


def test_given_a_ca_file_that_cannot_serve_then_refused_naming_the_setting(tmp_path):
    missing, folder, text = tmp_path / "missing.pem", tmp_path, tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    for path, why in [(missing, f"cannot read {missing}: No such file or directory"),
                      (folder, f"cannot read {folder}: Is a directory"),
                      (text, f"{text} holds no PEM certificate"),
                      (broken, f"{broken} is not a usable CA file: ")]:
        name, said = _refused(next_hop_tls_security_level="verify", next_hop_tls_ca_file=path)
        assert name == "next_hop_tls_ca_file"
        assert said.startswith(f"Value error, {why}"), said


def test_given_a_ca_file_below_level_verify_then_refused(ca_file):
    # A CA file that is never read would look like verification that is not there.
    assert _refused(next_hop_starttls="opportunistic", next_hop_tls_ca_file=ca_file) == (
        "next_hop_tls_ca_file", "Value error, read only at level verify, and the level is may: "
        "set next_hop_tls_security_level = verify, or remove the CA file")


def test_given_a_name_that_is_not_a_host_name_then_refused():
    assert _refused(next_hop_tls_name="mx.example.net\r\n")[0] == "next_hop_tls_name"


def test_decider_run_with_a_missing_ca_file_exits_2_naming_the_setting(
        tmp_path, monkeypatch, capsys):
    # Given the decider's environment naming a CA file that is not there
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # never reached
    monkeypatch.setenv("KATAGATE_DECIDER_NEXT_HOP_TLS_SECURITY_LEVEL", "verify")
    monkeypatch.setenv("KATAGATE_DECIDER_NEXT_HOP_TLS_CA_FILE", str(tmp_path / "ca.pem"))
    # When it starts
    with pytest.raises(SystemExit) as exited:
        main(["decider", "run"])
    # Then it stops at once with one line naming the setting and its variable
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "katagate decider: setting next_hop_tls_ca_file (KATAGATE_DECIDER_NEXT_HOP_TLS_CA_FILE): "
        f"Value error, cannot read {tmp_path / 'ca.pem'}: No such file or directory\n")
