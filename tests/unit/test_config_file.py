"""katagate.toml read by every stage's settings (eventlog/config_file.py): an option wins over
the environment, which wins over the file, which wins over the default; a typo, an unknown
section, a syntax error or a value out of range is refused naming where it is, and a stage
exits 2 with it before it starts; `katagate config check|show` see the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from katagate.cli import main
from katagate.eventlog.config_file import CONFIG_ENV, ConfigFileError
from katagate.ingest.settings import IngestSettings


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write FILE's text and name it in KATAGATE_CONFIG (restored after the test)."""
    # Set (empty: no file) so that monkeypatch restores it after a `--config` set it.
    monkeypatch.setenv(CONFIG_ENV, "")
    for name in ("KATAGATE_INGEST_PORT", "KATAGATE_INGEST_MAX_MESSAGE_BYTES",
                 "KATAGATE_CONSOLE_ADMIN_PASSWORD", "KATAGATE_CONSOLE_PORT"):
        monkeypatch.delenv(name, raising=False)

    def write(text: str) -> Path:
        path = tmp_path / "katagate.toml"
        path.write_text(text)
        monkeypatch.setenv(CONFIG_ENV, str(path))
        return path
    return write


def refused(config_text: str, config) -> str:
    config(config_text)
    with pytest.raises(ConfigFileError) as caught:
        IngestSettings()
    return str(caught.value)


def test_given_a_misspelt_key_then_it_is_refused_naming_section_key_and_the_nearest(config):
    said = refused("[ingest]\nmax_mesage_bytes = 1048576\n", config)
    assert said.endswith("[ingest] max_mesage_bytes: unknown setting; "
                         "did you mean max_message_bytes?")


def test_given_an_unknown_section_then_it_is_refused_with_the_nearest_section(config):
    said = refused("[ingst]\nport = 2525\n", config)
    assert said.endswith("[ingst]: unknown section; did you mean [ingest]?")


def test_given_a_syntax_error_then_the_line_and_column_are_named(config):
    said = refused("[ingest]\nport = 2525\nhost = \n", config)
    assert "(at line 3, column 8)" in said


def test_given_the_file_sets_a_value_then_the_environment_wins_over_it_and_an_option_over_both(
        config, monkeypatch):
    config("[ingest]\nport = 2600\nmax_message_bytes = 2097152\n")
    assert (IngestSettings().port, IngestSettings().max_message_bytes) == (2600, 2097152)
    monkeypatch.setenv("KATAGATE_INGEST_PORT", "2700")
    assert IngestSettings().port == 2700
    assert IngestSettings(port=2800).port == 2800
    assert IngestSettings().max_message_bytes == 2097152


def test_given_a_value_out_of_range_then_the_stage_exits_2_naming_setting_and_range(
        config, capsys):
    path = config("[decider]\nretry_period_s = 10\n")
    with pytest.raises(SystemExit) as stopped:
        main(["decider", "run"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (f"katagate decider: {path}: [decider] retry_period_s: "
                                       "must be between 60 and 2592000 (got 10)\n")


def test_given_a_typo_then_the_stage_run_with_config_exits_2_before_it_starts(
        config, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, "")
    path = tmp_path / "other.toml"
    path.write_text("[decider]\nretry_period = 3600\n")
    with pytest.raises(SystemExit) as stopped:
        main(["decider", "run", "--config", str(path)])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        f"katagate decider: {path}: [decider] retry_period: unknown setting; "
        "did you mean retry_period_s?\n")


def test_show_gives_each_settings_origin_and_masks_secrets(config, capsys, monkeypatch):
    path = config('[ingest]\nport = 2600\n[console]\nadmin_name = "root"\n')
    monkeypatch.setenv("KATAGATE_CONSOLE_ADMIN_PASSWORD", "hunter2-very-secret")
    monkeypatch.setenv("KATAGATE_CONSOLE_PORT", "8091")
    assert main(["config", "show", str(path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "port = 2600  # file" in lines[lines.index("[ingest]"):]
    console = lines[lines.index("[console]"):]
    assert "admin_name = root  # file" in console
    assert "port = 8091  # env" in console
    assert "admin_password = ********  # env" in console
    assert "max_body_bytes = 65536  # default" in console
    assert "hunter2" not in out


def test_given_kata_in_file_and_env_then_up_names_only_those_keys_with_env_winning(
        config, monkeypatch):
    from katagate.config_sections import up_sections
    from katagate.up_cmd import load_config

    # Given the file names the poll interval and protection, the environment protection too
    path = config("[kata]\npoll_interval_s = 5\nprotection = true\n")
    monkeypatch.setenv("KATAGATE_KATA_PROTECTION", "false")
    # Then up's [kata] names those two alone (the rest stays as the control log has it)
    assert up_sections(load_config(path))["kata"] == {"poll_interval_s": 5, "protection": False}


@pytest.mark.parametrize("text", [
    "[ingest]\nport = " + "[" * 3000 + "]" * 3000 + "\n",       # arrays nested too deep
    "[ingest]\nport = " + "{a=" * 3000 + "1" + "}" * 3000 + "\n",  # inline tables too
    "[ingest]\nport = " + "9" * 5000 + "\n",                     # past int's 4300 digits
])
def test_given_a_crafted_file_then_the_stage_exits_2_naming_it_not_with_a_traceback(
        config, capsys, text):
    # Given a file tomllib cannot read but by raising what is not a TOMLDecodeError
    path = config(text)
    # When a stage starts with it
    with pytest.raises(SystemExit) as stopped:
        main(["decider", "run"])
    # Then it exits 2 with one line naming the file, as for a syntax error
    assert stopped.value.code == 2
    said = capsys.readouterr().err
    assert said.startswith(f"katagate decider: {path}: not valid TOML: ")
    assert said.count("\n") == 1


def test_given_an_endless_file_then_it_is_refused_after_a_mebibyte_not_read_into_memory(
        config, monkeypatch):
    # Given KATAGATE_CONFIG naming a file that never ends
    monkeypatch.setenv(CONFIG_ENV, "/dev/zero")
    # Then a stage's settings refuse it at once
    with pytest.raises(ConfigFileError) as caught:
        IngestSettings()
    assert str(caught.value) == ("/dev/zero: larger than 1048576 bytes: not a configuration "
                                 "file")


def test_given_a_file_holding_a_password_that_others_may_read_then_it_is_refused(config):
    # Given the console's first password in a file of mode 0644
    path = config('[console]\nadmin_password = "hunter2-in-the-file"\n')
    path.chmod(0o644)
    # When a stage reads it, Then it is refused naming the mode and the setting, not its value
    with pytest.raises(ConfigFileError) as caught:
        IngestSettings()
    said = str(caught.value)
    assert "has mode 0644 and holds [console] admin_password" in said
    assert "hunter2" not in said
    # And its owner and group (root:katagate 0640) may read it
    path.chmod(0o640)
    assert IngestSettings().port == 2525


def test_given_a_file_others_may_write_then_it_is_refused_whatever_it_holds(config):
    path = config("[ingest]\nport = 2600\n")
    path.chmod(0o666)
    with pytest.raises(ConfigFileError) as caught:
        IngestSettings()
    assert "has mode 0666: others may change it" in str(caught.value)


def test_given_a_list_setting_in_the_environment_that_is_not_json_then_exit_2_naming_it(
        config, capsys, monkeypatch):
    # Given a relay network list written as a bare value, not JSON
    monkeypatch.setenv("KATAGATE_INGEST_RELAY_NETWORKS", "[10.0.0.0/8")
    # When the stage starts, Then it exits 2 naming the variable, not with a traceback
    with pytest.raises(SystemExit) as stopped:
        main(["ingest", "run"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == (
        "katagate ingest: setting relay_networks (KATAGATE_INGEST_RELAY_NETWORKS): not valid "
        'JSON; a list is written ["a", "b"]\n')
    # And `config check` lists it with the file's problems
    path = config("[ingest]\nport = 2600\n")
    path.chmod(0o600)
    assert main(["config", "check", str(path)]) == 2
    assert "environment: setting relay_networks" in capsys.readouterr().err
