"""The administrator console driven as a person would (pexpect on a terminal), following the
documented flow: log in, Program settings, Select action, Configure KSMG Sensor connections,
the sensor's window with both fingerprints, Accept KSMG Sensor."""

from __future__ import annotations

import re
import sys

import pexpect
import pytest

from tests.integration.test_emulator_server import (
    ROOT,
    EmulatorProcess,
    Sensor,
    emulator,
    env,
    make_client_cert,
)

PROMPT = r"Select an item \[1-(\d+)\] and press ENTER: "


@pytest.fixture
def server(tmp_path):
    process = EmulatorProcess(tmp_path / "state", tmp_path / "emulator.log").start()
    yield process
    process.stop()


def console(state) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable,
                          ["-m", "katagate.kata_emulator", "console", "--state", str(state)],
                          cwd=str(ROOT), env=env(), encoding="utf-8", timeout=20)
    child.logfile_read = sys.stdout  # shown by pytest on failure
    return child


def set_password(state, password: str) -> None:
    result = emulator(state, "admin", "set-password", stdin=password + "\n")
    assert result.returncode == 0, result.stderr


def log_in(child: pexpect.spawn, name: str, password: str) -> None:
    child.expect("Administrator account name: ")
    child.sendline(name)
    child.expect("Password: ")
    child.sendline(password)


def choose(child: pexpect.spawn, item: str) -> None:
    """Wait for the next window and pick `item` in it."""
    child.expect(PROMPT)
    pick(child, item)


def pick(child: pexpect.spawn, item: str) -> None:
    """Find `item` in the window just drawn and send its number, as a person reads the menu."""
    match = re.search(rf"^\s*(\d+)\. .*{re.escape(item)}.*$", child.before, re.MULTILINE)
    assert match, f"{item!r} not in:\n{child.before}"
    child.sendline(match.group(1))


def test_accept_a_sensor_in_the_console(server, tmp_path):
    cert = make_client_cert(tmp_path / "certs", "ksmg-console")
    sensor = Sensor(server.port, "ksmg-console", cert)
    central_node = sensor.server_fingerprint()  # from the TLS handshake, not from the emulator
    assert sensor.json("GET", "/scans/state")[0] == 401
    set_password(server.state, "correct horse")

    child = console(server.state)
    log_in(child, "admin", "correct horse")
    child.expect("Program administrator menu")
    choose(child, "Program settings")
    child.expect("Select action")
    choose(child, "Configure KSMG Sensor connections")
    child.expect("Configure KSMG Sensor connections\r\n=+")
    child.expect(PROMPT)
    line = re.search(r"^\s*(\d+)\. (.)\s+127\.0\.0\.1\s+ksmg-console\b.*$", child.before,
                     re.MULTILINE)
    assert line, child.before
    assert line.group(2) == "*"  # unconfirmed
    child.sendline(line.group(1))

    child.expect("KSMG public key fingerprint:\\s+(\\S+)")
    assert child.match.group(1) == cert.fingerprint
    child.expect("KATA public key fingerprint:\\s+(\\S+)")
    assert child.match.group(1) == central_node
    choose(child, "Accept KSMG Sensor")
    child.expect("KSMG Sensor ksmg-console accepted.")

    child.expect("Configure KSMG Sensor connections")
    child.expect(PROMPT)
    line = re.search(r"^\s*\d+\. (.)\s+127\.0\.0\.1\s+ksmg-console\b", child.before, re.MULTILINE)
    assert line
    assert line.group(1) == " "  # the asterisk is gone
    assert sensor.json("GET", "/scans/state")[0] == 404  # accepted: no scans yet

    pick(child, "Back")
    child.expect("Select action")
    choose(child, "Back")
    child.expect("Program administrator menu")
    choose(child, "Exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_reject_in_the_console(server, tmp_path):
    sensor = Sensor(server.port, "ksmg-r", make_client_cert(tmp_path / "certs", "ksmg-r"))
    sensor.json("GET", "/detects")
    set_password(server.state, "pw")
    child = console(server.state)
    log_in(child, "admin", "pw")
    choose(child, "Program settings")
    choose(child, "Configure KSMG Sensor connections")
    choose(child, "ksmg-r")
    choose(child, "Reject KSMG Sensor")
    child.expect("KSMG Sensor ksmg-r rejected.")
    child.sendeof()
    child.expect(pexpect.EOF)
    assert sensor.json("GET", "/detects") == (401, {"error": "integration request rejected"})


def test_wrong_password_three_times_ends_the_session(tmp_path):
    state = tmp_path / "state"
    set_password(state, "right")
    child = console(state)
    for _ in range(3):
        log_in(child, "admin", "wrong")
        child.expect("Login incorrect.")
    child.expect("Too many failed login attempts")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1


def test_console_refuses_without_a_password(tmp_path):
    state = tmp_path / "state"
    emulator(state, "fingerprint")  # the state folder exists, no admin yet
    child = console(state)
    child.expect("No administrator password is set")
    child.expect("kata-emulator admin set-password")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1


def test_password_from_a_file_and_never_stored_in_clear(tmp_path):
    state, secret = tmp_path / "state", tmp_path / "pw.txt"
    secret.write_text("from-a-file\n")
    result = emulator(state, "admin", "set-password", "--name", "root", "--password-file",
                      str(secret))
    assert result.returncode == 0, result.stderr
    assert all(b"from-a-file" not in p.read_bytes() for p in state.iterdir())
    child = console(state)
    log_in(child, "root", "from-a-file")
    child.expect("Program administrator menu")
    child.sendeof()
    child.expect(pexpect.EOF)
    empty = emulator(state, "admin", "set-password", stdin="\n")
    assert empty.returncode == 2
    assert "must not be empty" in empty.stderr
