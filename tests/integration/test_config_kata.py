"""Given the real broker: `katagate up` writes [kata] at the first start and, at a later start
with an edited [kata], the difference as the admin commands' events with actor `config-file`,
one line per changed setting; the same file again writes nothing; a value the settings refuse
writes nothing and stops `up`, and so does "emulator" in place of a Central Node in force."""

from __future__ import annotations

import pytest

from katagate.admin.first_start import FILE_ACTOR
from katagate.cli import main
from katagate.schemas import KataProtectionToggled, KataSettingsChanged
from katagate.up_kata import write_kata_settings
from tests.integration.kafka_read import control_events

pytestmark = pytest.mark.kafka
NODE = "192.0.2.10"


def test_given_a_started_gateway_when_kata_is_edited_then_up_writes_the_change_by_config_file(
        kafka_settings, capsys):
    # Given the first start wrote the file's [kata]
    kata = {"central_node": NODE, "poll_interval_s": 5, "response_timeout_s": 600}
    assert write_kata_settings(kafka_settings, kata, NODE, 443)
    first = control_events(kafka_settings)
    assert [e.actor for e in first] == ["katagate-up", "katagate-up"]
    capsys.readouterr()
    # When the poll interval is edited, protection switched off, and `up` starts again
    edited = {**kata, "poll_interval_s": 60, "protection": False}
    assert write_kata_settings(kafka_settings, edited, NODE, 443)
    # Then a settings change and the protection switch are written, by config-file
    changed, toggled = control_events(kafka_settings)[len(first):]
    assert isinstance(changed, KataSettingsChanged)
    assert (changed.actor, changed.changed) == (FILE_ACTOR, ["poll_interval_s"])
    assert (changed.settings.poll_interval_s, changed.settings.response_timeout_s) == (60, 600)
    assert isinstance(toggled, KataProtectionToggled)
    assert (toggled.actor, toggled.enabled) == (FILE_ACTOR, False)
    # And each is said on its own line
    assert capsys.readouterr().out.splitlines() == [
        "[kata] poll_interval_s: 5 s -> 60 s (actor config-file)",
        "[kata] protection: on -> off (actor config-file)",
    ]
    # When `up` starts again with the same file, nothing is written
    assert write_kata_settings(kafka_settings, edited, NODE, 443)
    assert len(control_events(kafka_settings)) == len(first) + 2
    # When the file holds a value the settings refuse, `up` stops naming it and writes nothing
    assert not write_kata_settings(kafka_settings, {**edited, "poll_interval_s": 0}, NODE, 443)
    assert "poll_interval_s" in capsys.readouterr().err
    assert len(control_events(kafka_settings)) == len(first) + 2
    # When the file says "emulator" while the log names the Central Node NODE, `up` stops
    # naming the node and writes nothing: the emulator never replaces a real node silently
    assert not write_kata_settings(kafka_settings, {**edited, "central_node": "emulator"},
                                   "127.0.0.1", 8443)
    assert f"Central Node {NODE}:443" in capsys.readouterr().err
    assert len(control_events(kafka_settings)) == len(first) + 2


def test_given_stages_run_by_systemd_when_config_apply_runs_then_kata_is_written_by_config_file(
        kafka_settings, tmp_path, monkeypatch, capsys):
    # Given a file whose [kafka] names this broker and topics, and no KATA settings yet
    config = tmp_path / "katagate.toml"
    kafka = (f'[kafka]\nbootstrap_servers = "{kafka_settings.bootstrap_servers}"\n'
             f'topic_prefix = "{kafka_settings.topic_prefix}"\n')
    config.write_text(kafka + "[kata]\npoll_interval_s = 30\n")
    config.chmod(0o600)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    # When it names no Central Node, the first settings are refused, nothing written
    assert main(["config", "apply", str(config)]) == 2
    assert "central_node" in capsys.readouterr().err
    assert control_events(kafka_settings) == []
    # And "emulator" is refused: no `katagate up` starts one here
    config.write_text(kafka + '[kata]\ncentral_node = "emulator"\n')
    assert main(["config", "apply", str(config)]) == 2
    # When it names the node, the first settings are written; an edit then, by config-file
    config.write_text(kafka + f'[kata]\ncentral_node = "{NODE}"\npoll_interval_s = 30\n')
    assert main(["config", "apply", str(config)]) == 0
    config.write_text(kafka + f'[kata]\ncentral_node = "{NODE}"\npoll_interval_s = 90\n')
    assert main(["config", "apply", str(config)]) == 0
    changed = control_events(kafka_settings)[-1]
    assert isinstance(changed, KataSettingsChanged)
    assert (changed.actor, changed.settings.poll_interval_s) == (FILE_ACTOR, 90)
    assert str(changed.settings.central_node_address) == NODE
