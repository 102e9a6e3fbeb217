"""`katagate up`'s [kata] against what an administrator set (katagate/up_kata.py): the file's
"emulator" never replaces a Central Node set in the control log, and a file whose [kata] names
the emulator while [emulator] is off is refused by the check, not by a traceback at start;
`katagate down` names a file it cannot read, as `up` does."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from katagate.cli import main
from katagate.schemas import ControlState, KataSettings
from katagate.up_kata import emulator_over_node


def in_force(address: str | None) -> ControlState:
    node = IPv4Address(address) if address else None
    return replace(ControlState(version=3),
                   settings=KataSettings(central_node_address=node, central_node_port=443))


def test_given_a_real_central_node_in_force_then_the_files_emulator_does_not_replace_it():
    # Given an administrator connected the gateway to 10.20.30.40 (katagate settings set)
    said = emulator_over_node("emulator", in_force("10.20.30.40"))
    # Then `up` refuses to point it back at the emulator, naming the node and what to do
    assert said is not None
    assert "Central Node 10.20.30.40:443" in said
    assert 'set central_node = "10.20.30.40"' in said


@pytest.mark.parametrize(("file", "address"), [
    ("emulator", "127.0.0.1"),    # the emulator's own address: a later `up`
    ("emulator", None),           # nothing set yet
    ("10.20.30.41", "10.20.30.40"),  # the file names another real node: its edit, applied
    (None, "10.20.30.40"),        # the file does not name the node
])
def test_given_anything_else_then_the_file_applies_as_before(file, address):
    assert emulator_over_node(file, in_force(address)) is None


def test_given_kata_on_the_emulator_with_the_emulator_off_then_check_refuses_it(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KATAGATE_CONFIG", "")
    path = tmp_path / "katagate.toml"
    path.write_text('[kata]\ncentral_node = "emulator"\n[emulator]\nenabled = false\n')
    assert main(["config", "check", str(path)]) == 2
    assert capsys.readouterr().err == (
        f'{path}: [kata] central_node: "emulator" needs [emulator] enabled = true; else name '
        "the Central Node's IPv4 address\n")


def test_given_a_file_with_a_syntax_error_then_down_exits_2_naming_it(tmp_path, capsys):
    path = tmp_path / "katagate.toml"
    path.write_text("[paths]\nstate_dir = \n")
    assert main(["down", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"katagate down: {path}: not valid TOML: Invalid value (at line 2, column 13)\n")


def test_given_an_administrator_changed_a_setting_then_up_says_whose_change_the_file_replaces():
    import uuid
    from datetime import UTC, datetime

    from katagate.admin.first_start import file_changes
    from katagate.schemas import KataSettingsChanged, ProducerRef
    from katagate.up_kata import Known, evolve_known, undone

    now = datetime(2026, 12, 3, tzinfo=UTC)

    def change(actor: str, version: int, **values: int) -> KataSettingsChanged:
        return KataSettingsChanged(
            event_id=uuid.uuid4(), occurred_at=now, producer=ProducerRef(stage="admin",
                                                                         instance="t"),
            version=version, actor=actor, settings=KataSettings(**values),
            changed=list(values))

    # Given the first start set the poll interval, then an administrator changed it
    known = evolve_known(Known(), change("katagate-up", 1, poll_interval_s=5))
    known = evolve_known(known, change("cli:root", 2, poll_interval_s=120))
    assert known.set_by == {"poll_interval_s": "cli:root"}
    # When `up` starts with the file's 5 s again
    events, _ = file_changes(known.state, {"poll_interval_s": 5}, None, now)
    # Then it warns that the file replaces the administrator's value, naming them
    assert undone(events, known.set_by) == [
        "[kata] poll_interval_s: the file's value replaces the one cli:root set; remove "
        "poll_interval_s from [kata] to keep what the commands set"]
    # And an edit of the file over the file's own earlier value is not warned about
    known = evolve_known(known, events[0])
    events, _ = file_changes(known.state, {"poll_interval_s": 30}, None, now)
    assert undone(events, known.set_by) == []
