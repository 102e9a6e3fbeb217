"""`katagate` commands that need no broker, run in-process as an operator types them: the ACLs
view, the JSON Schemas and the dashboard's README section, the console's API tokens and admin
password, the sensor identity, the settings error that names the allowed range, the replay's
argument parsers, and `katagate down`."""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from katagate import dashboard_cmd, projector_cmd
from katagate.access.tokens import token_digest
from katagate.cli import main
from katagate.console.accounts import ACCOUNT_FILE, INITIAL_PASSWORD_FILE, AccountStore
from katagate.console.passwords import verify_password
from katagate.console.settings import ConsoleSettings
from katagate.eventlog.principals import PRINCIPALS, grants
from katagate.process import _bounds
from katagate.scanner.identity import load_or_create
from katagate.schemas import jsonschema

REPO = Path(__file__).resolve().parents[2]
# Nothing listens there: a command that tried to reach Kafka would hang or fail, not pass.
NO_KAFKA = "127.0.0.1:9"


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`katagate ARGS` in-process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", NO_KAFKA)

    def run_cli(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run_cli


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """`katagate ARGS` refused by its argument parser or its settings: exit 2; its stderr."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


# --- katagate acls show ---------------------------------------------------------------------


def test_acls_show_prints_every_principals_grants_for_the_prefix_without_a_broker(
        run, monkeypatch):
    monkeypatch.setenv("KATAGATE_TOPIC_PREFIX", "acme")
    code, out, err = run("acls", "show")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    # One header per principal, with why it exists, in PRINCIPALS' order
    headers = [line for line in lines if line.startswith("# ") and ": " in line]
    assert [h.split(":")[0][2:] for h in headers[:len(PRINCIPALS)]] == list(PRINCIPALS)
    assert headers[0] == f"# admin: {PRINCIPALS['admin'].why}"
    assert lines[-1] == ("# admin is also a super user of katagate's own secure broker "
                         "(it applies these)")
    # Every grant of the namespace exactly once, under its principal's header
    body = [line for line in lines if not line.startswith("#")]
    assert sorted(body) == sorted(g.line() for g in grants("acme"))
    assert "ingest     WRITE     topic            acme.mail.raw" in body
    assert "admin      WRITE     transactional_id acme-" in "\n".join(body)
    section = lines[lines.index(f"# ingest: {PRINCIPALS['ingest'].why}") + 1:]
    section = section[:next(i for i, line in enumerate(section) if line.startswith("#"))]
    assert section
    assert all(line.startswith("ingest ") for line in section)
    assert not any("katagate." in line for line in body)  # the prefix asked, not the default


# --- katagate schemas write|check -----------------------------------------------------------


def test_schemas_check_passes_on_the_committed_files(run):
    assert run("schemas", "check") == (0, "", "")


def test_schemas_write_then_check_and_a_changed_copy_is_stale(run, tmp_path):
    target = tmp_path / "json"
    code, out, _ = run("schemas", "write", "--dir", str(target))
    assert code == 0
    assert out == f"wrote the JSON Schemas into {target}\n"
    # The files written are the committed ones, byte for byte
    committed = {p.name: p.read_bytes() for p in (REPO / "schemas" / "json").glob("*.json")}
    assert {p.name: p.read_bytes() for p in target.glob("*.json")} == committed
    assert set(committed) == set(jsonschema.generate())
    assert run("schemas", "check", "--dir", str(target)) == (0, "", "")

    # When one is edited, one removed and a stranger added
    names = sorted(committed)
    edited, removed = names[0], names[1]
    (target / edited).write_text((target / edited).read_text() + " ", encoding="utf-8")
    (target / removed).unlink()
    (target / "zz.extra.v1.json").write_text("{}", encoding="utf-8")
    code, out, _ = run("schemas", "check", "--dir", str(target))
    # Then check fails and names each
    assert code == 1
    assert out.splitlines() == sorted(
        f"stale: {n}" for n in (edited, removed, "zz.extra.v1.json"))

    # And write makes the folder exactly the generated files again
    assert run("schemas", "write", "--dir", str(target))[0] == 0
    assert not (target / "zz.extra.v1.json").exists()
    assert run("schemas", "check", "--dir", str(target)) == (0, "", "")


def test_schemas_check_of_a_missing_folder_names_every_file(run, tmp_path):
    code, out, _ = run("schemas", "check", "--dir", str(tmp_path / "nowhere"))
    assert code == 1
    assert out.splitlines() == [f"stale: {n}" for n in sorted(jsonschema.generate())]


# --- katagate dashboard describe|write|check ------------------------------------------------

TINY = {
    "title": "Tiny", "uid": "tiny-1",
    "panels": [
        # Listed out of order: the description follows the grid, top to bottom, left to right
        {"type": "stat", "title": "Held", "gridPos": {"y": 1, "x": 12},
         "fieldConfig": {"defaults": {"unit": "bytes"}},
         "targets": [{"expr": "held_bytes", "legendFormat": "__auto"}]},
        {"type": "row", "title": "Mail", "gridPos": {"y": 0, "x": 0}},
        {"type": "timeseries", "title": "Accepted", "gridPos": {"y": 1, "x": 0},
         "fieldConfig": {"defaults": {"unit": "mps"}},
         "targets": [{"expr": "rate(accepted[1m])", "legendFormat": "{{stage}}"},
                     {"expr": "rate(refused[1m])"}]},
        {"type": "row", "title": "Kafka", "gridPos": {"y": 9, "x": 0}},
        {"type": "gauge", "title": "Lag", "gridPos": {"y": 10, "x": 0},
         "fieldConfig": {"defaults": {"unit": "furlongs"}}, "targets": []},
    ],
}
TINY_TEXT = (
    "Dashboard **Tiny** (uid `tiny-1`): 2 rows, 3 panels.\n"
    "\n#### Mail\n\n"
    "- **Accepted** (time series, messages/s `mps`)\n"
    "  - {{stage}}: `rate(accepted[1m])`\n"
    "  - `rate(refused[1m])`\n"
    "- **Held** (stat, bytes `bytes`)\n"
    "  - `held_bytes`\n"
    "\n#### Kafka\n\n"
    "- **Lag** (gauge, furlongs `furlongs`)\n"
)


def test_dashboard_describe_prints_rows_panels_units_and_queries(run, tmp_path):
    dashboard = tmp_path / "tiny.json"
    dashboard.write_text(json.dumps(TINY))
    assert run("dashboard", "describe", "--dashboard", str(dashboard)) == (0, TINY_TEXT, "")
    # The real dashboard: its title, uid and every panel's title
    code, out, _ = run("dashboard", "describe")
    real = dashboard_cmd.load()
    assert code == 0
    assert out.startswith(f"Dashboard **{real['title']}** (uid `{real['uid']}`): "
                          f"{len(dashboard_cmd.rows(real))} rows, ")
    for _title, panels in dashboard_cmd.rows(real):
        for panel in panels:
            assert f"- **{panel['title']}** (" in out


def test_dashboard_check_passes_on_the_repository_readme(run):
    assert run("dashboard", "check") == (0, "", "")


def test_dashboard_write_puts_the_section_between_its_markers_and_check_sees_staleness(
        run, tmp_path):
    dashboard = tmp_path / "tiny.json"
    dashboard.write_text(json.dumps(TINY))
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nIntro.\n\n", "\n\n## Next section\n\nKept.\n"
    readme.write_text(f"{before}{dashboard_cmd.BEGIN}\nold text\n{dashboard_cmd.END}{after}")
    options = ("--dashboard", str(dashboard), "--readme", str(readme))

    code, out, _ = run("dashboard", "check", *options)
    assert (code, out) == (1, f"stale: the dashboard section of {readme}; run `katagate "
                              "dashboard write`\n")
    code, out, _ = run("dashboard", "write", *options)
    assert (code, out) == (0, f"wrote the dashboard's structure into {readme}\n")
    assert readme.read_text() == (
        f"{before}{dashboard_cmd.BEGIN}\n\n{TINY_TEXT}\n{dashboard_cmd.END}{after}")
    assert run("dashboard", "check", *options) == (0, "", "")
    # Writing again changes nothing
    assert run("dashboard", "write", *options)[0] == 0
    assert readme.read_text().count(dashboard_cmd.BEGIN) == 1
    # When the dashboard changes, the README is stale again
    dashboard.write_text(json.dumps({**TINY, "title": "Tiny 2"}))
    assert run("dashboard", "check", *options)[0] == 1


def test_dashboard_write_into_a_readme_without_the_markers_fails_and_leaves_it(run, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# No generated section here\n")
    code, out, err = run("dashboard", "write", "--readme", str(readme))
    assert (code, out) == (1, "")
    assert err.startswith("katagate dashboard: README has no section between ")
    assert readme.read_text() == "# No generated section here\n"


# --- katagate console token|password --------------------------------------------------------


def test_console_tokens_are_created_once_listed_by_name_and_revoked(run, tmp_path):
    state = tmp_path / "console"
    where = ("--state-dir", str(state))
    assert run("console", "token", "list", *where) == (0, "[]\n", "")

    code, token, err = run("console", "token", "create", "ci-deploy", *where)
    assert (code, err) == (0, "")
    token = token.strip()
    assert token.startswith("kgt_")
    assert len(token) > 40
    # Only its digest is kept, in a 0600 file of a 0700 folder
    stored = json.loads((state / "tokens.json").read_text())["tokens"]
    assert [(t["name"], t["sha256"]) for t in stored] == [("ci-deploy", token_digest(token))]
    assert token not in (state / "tokens.json").read_text()
    assert (state / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700

    assert run("console", "token", "create", "backup", *where)[0] == 0
    code, out, _ = run("console", "token", "list", *where)
    listed = json.loads(out)
    assert code == 0
    assert [t["name"] for t in listed] == ["ci-deploy", "backup"]
    assert all(datetime.fromisoformat(t["created_at"]).tzinfo is not None for t in listed)
    assert "sha256" not in out
    assert token not in out

    # A second token of one name, and a bad name, are refused naming the field
    code, out, err = run("console", "token", "create", "ci-deploy", *where)
    assert (code, out) == (2, "")
    assert err == ("katagate console token create: name: a token 'ci-deploy' exists already; "
                   "revoke it first\n")
    code, _, err = run("console", "token", "create", "no spaces", *where)
    assert code == 2
    assert err.startswith("katagate console token create: name: must be 1..64 letters")

    assert run("console", "token", "revoke", "ci-deploy", *where) == (
        0, "token ci-deploy revoked\n", "")
    assert [t["name"] for t in json.loads(run("console", "token", "list", *where)[1])] == [
        "backup"]
    assert run("console", "token", "revoke", "ci-deploy", *where) == (
        2, "", "katagate console token revoke: no token 'ci-deploy'\n")


def test_console_password_needs_an_account_then_changes_it_from_stdin(
        run, tmp_path, monkeypatch):
    state = tmp_path / "console"
    where = ("--state-dir", str(state))
    monkeypatch.setattr(sys, "stdin", io.StringIO("a new passphrase\n"))
    code, out, err = run("console", "password", *where)
    assert (code, out) == (2, "")
    assert err.startswith("katagate console password: no admin account yet: start the console")
    assert not (state / ACCOUNT_FILE).exists()

    # Given the account a first start made, with a generated password
    store = AccountStore(state)
    first = store.ensure_admin("admin", None)
    assert first is not None
    assert first.generated_password is not None
    assert (state / INITIAL_PASSWORD_FILE).exists()

    # A password too short is refused and changes nothing
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert run("console", "password", *where) == (
        2, "", "katagate console password: password: must be 8..1024 characters, got 5\n")
    assert verify_password(first.generated_password, store.admin().password_hash)

    # When the administrator types a new one
    monkeypatch.setattr(sys, "stdin", io.StringIO("a new passphrase\n"))
    assert run("console", "password", *where) == (
        0, "admin password changed; 0 session(s) ended\n", "")
    # Then only the new one verifies, and the generated one's file is gone
    account = AccountStore(state).admin()
    assert account.name == "admin"
    assert verify_password("a new passphrase", account.password_hash)
    assert not verify_password(first.generated_password, account.password_hash)
    assert not (state / INITIAL_PASSWORD_FILE).exists()
    assert (state / ACCOUNT_FILE).stat().st_mode & 0o777 == 0o600


# --- settings errors name the setting, its variable and its range (process._bounds) ---------


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("KATAGATE_CONSOLE_PORT", "70000",
     "katagate console: setting port (KATAGATE_CONSOLE_PORT): Input should be less than or "
     "equal to 65535; allowed: >= 0, <= 65535\n"),
    ("KATAGATE_CONSOLE_PROJECTOR_TIMEOUT_S", "0",
     "katagate console: setting projector_timeout_s (KATAGATE_CONSOLE_PROJECTOR_TIMEOUT_S): "
     "Input should be greater than 0; allowed: > 0, <= 60\n"),
    # A field without bounds: no range to name
    ("KATAGATE_CONSOLE_COOKIE_SECURE", "maybe",
     "katagate console: setting cookie_secure (KATAGATE_CONSOLE_COOKIE_SECURE): Input should "
     "be a valid boolean, unable to interpret input\n"),
])
def test_a_bad_console_setting_exits_2_naming_it_and_its_allowed_range(
        capsys, monkeypatch, tmp_path, variable, value, expected):
    monkeypatch.setenv(variable, value)
    assert refused(capsys, "console", "token", "list", "--state-dir", str(tmp_path)) == expected
    assert not any(tmp_path.iterdir())


def test_a_bad_projector_setting_names_its_range_too(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KATAGATE_PROJECTOR_PORT", "-1")
    err = refused(capsys, "projector", "token", "list", "--state-dir", str(tmp_path))
    assert err.startswith("katagate projector: setting port (KATAGATE_PROJECTOR_PORT): ")
    assert err.endswith("; allowed: >= 0, <= 65535\n")


def test_bounds_name_only_what_the_field_declares():
    assert _bounds(ConsoleSettings, "max_body_bytes") == "; allowed: >= 1024, <= 16777216"
    assert _bounds(ConsoleSettings, "host") == ""  # no bounds
    assert _bounds(ConsoleSettings, "no_such_setting") == ""


# --- katagate scanner identity --------------------------------------------------------------


def test_scanner_identity_makes_the_sensor_key_once_and_prints_id_and_fingerprint(
        run, tmp_path, monkeypatch):
    monkeypatch.setenv("KATAGATE_SCANNER_STATE_DIR", str(tmp_path / "state"))
    code, out, err = run("scanner", "identity")
    assert (code, err) == (0, "")
    sensor = tmp_path / "state" / "sensor"
    identity = load_or_create(sensor)
    assert not identity.created  # the command made it; this only reads it
    assert out == (f"sensor id:                   {identity.sensor_id}\n"
                   f"KSMG public key fingerprint: {identity.fingerprint}\n")
    assert identity.sensor_id.startswith("katagate-")
    assert (sensor / "sensor.key").stat().st_mode & 0o777 == 0o600
    key = (sensor / "sensor.key").read_text()
    assert "PRIVATE KEY" in key
    assert key not in out
    # Asked again: the same identity, nothing made anew
    assert run("scanner", "identity") == (0, out, "")


def test_scanner_identity_defaults_to_the_xdg_state_folder_then_home(
        run, tmp_path, monkeypatch):
    monkeypatch.delenv("KATAGATE_SCANNER_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert run("scanner", "identity")[0] == 0
    assert (tmp_path / "xdg" / "katagate" / "sensor" / "sensor.id").exists()

    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    code, out, _ = run("scanner", "identity")
    assert code == 0
    made = tmp_path / "home" / ".local" / "state" / "katagate" / "sensor" / "sensor.id"
    assert made.read_text().strip() in out


# --- the replay's bounds: --until-offset N | --as-of ISO-TIME -------------------------------


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("7", 7), ("1000000000000", 10**12)])
def test_an_offset_is_a_whole_number_from_zero(text, value):
    assert projector_cmd._offset(text) == value


@pytest.mark.parametrize("text", ["-1", "1.5", "", "ten", "0x10", " 3", "\u00b2", "\u0663"])
def test_anything_else_is_not_an_offset(text):
    with pytest.raises(argparse.ArgumentTypeError) as refused_:
        projector_cmd._offset(text)
    assert str(refused_.value) == f"{text!r} is not an offset (an integer >= 0)"


@pytest.mark.parametrize(("text", "value"), [
    ("2025-03-14T09:26:53Z", datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)),
    ("2025-03-14T10:26:53+01:00", datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)),
    ("2025-03-14T09:26:53.250+00:00", datetime(2025, 3, 14, 9, 26, 53, 250000, tzinfo=UTC)),
    ("2025-03-14 04:26:53-05:00", datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)),
])
def test_an_instant_is_iso_8601_with_a_zone_and_comes_back_in_utc(text, value):
    parsed = projector_cmd.iso_instant(text)
    assert parsed == value
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(("text", "message"), [
    ("2025-03-14T09:26:53", "'2025-03-14T09:26:53' has no time zone (add Z or +00:00)"),
    ("2025-03-14", "'2025-03-14' has no time zone (add Z or +00:00)"),
    ("yesterday", "'yesterday' is not an ISO 8601 time"),
    ("2025-13-01T00:00:00Z", "'2025-13-01T00:00:00Z' is not an ISO 8601 time"),
])
def test_an_instant_without_a_zone_or_not_iso_is_refused(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as refused_:
        projector_cmd.iso_instant(text)
    assert str(refused_.value) == message


@pytest.mark.parametrize(("argv", "message"), [
    (("projector", "replay", "--until-offset", "-5"),
     "argument --until-offset: '-5' is not an offset (an integer >= 0)"),
    (("projector", "replay", "--as-of", "2025-03-14T09:26:53"),
     "argument --as-of: '2025-03-14T09:26:53' has no time zone (add Z or +00:00)"),
    (("audit", "replay", "--as-of", "soon"),
     "argument --as-of: 'soon' is not an ISO 8601 time"),
    (("audit", "reconcile", "--since", "2025-03-14"),
     "argument --since: '2025-03-14' has no time zone (add Z or +00:00)"),
    (("projector", "replay", "--until-offset", "3", "--as-of", "2025-03-14T09:26:53Z"),
     "argument --as-of: not allowed with argument --until-offset"),
])
def test_the_command_line_refuses_a_bad_bound_with_exit_2_naming_the_option(
        capsys, argv, message):
    assert message in refused(capsys, *argv)


# --- katagate down --------------------------------------------------------------------------

# Stands in for `katagate up`: on SIGTERM it removes its up.pid and exits, as `up` does.
UP_STAND_IN = textwrap.dedent("""
    import pathlib, signal, sys, time
    pid_file = pathlib.Path(sys.argv[1])
    def stop(*_):
        pid_file.unlink()
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
""")


def config_for(tmp_path: Path) -> Path:
    config = tmp_path / "katagate.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    (tmp_path / "state").mkdir(exist_ok=True)
    return config


def waited(seconds: int, pid: int) -> str:
    return (f"waiting up to {seconds} s for katagate (pid {pid}) to stop: ingest, the stages, "
            "the sink and the emulator, then the broker\nkatagate stopped\n")


def test_down_waits_as_long_as_the_stop_tiers_with_the_drain_times_set(run, tmp_path,
                                                                       monkeypatch):
    # Given the decider's drain time set to 5 s, ingest's left at its 30 s
    monkeypatch.setenv("KATAGATE_DECIDER_DRAIN_TIMEOUT_S", "5")
    config = config_for(tmp_path)
    pid_file = tmp_path / "state" / "up.pid"
    child = subprocess.Popen([sys.executable, "-c", UP_STAND_IN, str(pid_file), "katagate", "up"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        pid_file.write_text(f"{child.pid}\n")
        # Then down waits 40 s (ingest), 15 s (the stages), 10 s (sink, emulator), 60 s (the
        # broker) and 10 s
        assert run("down", "--config", str(config)) == (0, waited(145, child.pid), "")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_down_without_up_says_so(run, tmp_path):
    config = config_for(tmp_path)
    assert run("down", "--config", str(config)) == (0, "katagate is not up (no up.pid)\n", "")


def test_down_stops_the_process_named_by_up_pid_and_waits_for_its_pid_file(run, tmp_path):
    config = config_for(tmp_path)
    pid_file = tmp_path / "state" / "up.pid"
    child = subprocess.Popen([sys.executable, "-c", UP_STAND_IN, str(pid_file), "katagate", "up"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        pid_file.write_text(f"{child.pid}\n")
        assert run("down", "--config", str(config)) == (0, waited(170, child.pid), "")
        assert child.wait(timeout=10) == 0  # it got SIGTERM and stopped cleanly
        assert not pid_file.exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_down_with_a_stale_pid_file_removes_it(run, tmp_path):
    config = config_for(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid_file = tmp_path / "state" / "up.pid"
    pid_file.write_text(f"{gone.pid}\n")
    assert run("down", "--config", str(config)) == (0, "katagate was not running\n", "")
    assert not pid_file.exists()


def test_down_never_signals_a_process_that_is_not_katagate_up(run, tmp_path):
    config = config_for(tmp_path)
    pid_file = tmp_path / "state" / "up.pid"
    other = subprocess.Popen(["sleep", "30"])
    try:
        pid_file.write_text(f"{other.pid}\n")
        assert run("down", "--config", str(config)) == (
            0, f"katagate was not running (pid {other.pid} is another program; up.pid removed)\n",
            "")
        assert other.poll() is None  # still alive: the stale file named someone else
        assert not pid_file.exists()
    finally:
        other.kill()
        other.wait()


def test_down_refuses_a_pid_file_that_holds_no_number(run, tmp_path):
    config = config_for(tmp_path)
    pid_file = tmp_path / "state" / "up.pid"
    pid_file.write_text("garbage\n")
    code, out, _ = run("down", "--config", str(config))
    assert code == 1
    assert "holds 'garbage', not a process id" in out
    assert pid_file.exists()


def test_down_reads_the_state_folder_from_the_default_config_in_the_working_folder(
        run, tmp_path, monkeypatch):
    config_for(tmp_path)
    monkeypatch.chdir(tmp_path)
    pid_file = tmp_path / "state" / "up.pid"
    child = subprocess.Popen([sys.executable, "-c", UP_STAND_IN, str(pid_file), "katagate", "up"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        pid_file.write_text(f"{child.pid}\n")
        assert run("down") == (0, waited(170, child.pid), "")
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()



def test_a_reader_that_goes_away_ends_the_output_quietly():
    # Given `katagate config show | head -1`: the reader closes the pipe after one line
    config = Path(__file__).resolve().parents[2] / "katagate.toml"
    # A pipe of one page: the output (about 5 KB) cannot all fit in it before the reader goes,
    # so the command is still writing when it does, however slow the machine.
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    child = subprocess.Popen([sys.executable, "-m", "katagate", "config", "show", str(config)],
                             stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    assert child.stderr is not None
    assert os.read(read_end, 2).startswith(b"# ")
    os.close(read_end)
    # Then the command stops without a traceback
    error = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141
    assert "Traceback" not in error, error
