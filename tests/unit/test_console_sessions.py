"""Console sessions kept server-side in SQLite in the state folder: they survive a restart, work
on a second console over the same folder, and a password reset on the command line ends every
one of that account's sessions at once."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from katagate.cli import main
from katagate.console.app import create_app
from katagate.console.sessions import COOKIE
from tests.console_client import PASSWORD, make_console, sign_in


@contextmanager
def console_app(state: Path) -> Iterator[TestClient]:
    """One console instance (its own app, sessions object and limiter) over `state`."""
    console, _clock = make_console(state)
    try:
        with TestClient(create_app(console), base_url="http://console.test") as client:
            yield client
    finally:
        console.close()


def test_a_session_survives_a_restart_and_works_on_a_second_console(tmp_path):
    # Given an administrator signed in on console A
    with console_app(tmp_path) as first:
        csrf = sign_in(first)
        cookie = first.cookies[COOKIE]
        # When the same cookie reaches console B over the same state folder
        with console_app(tmp_path) as second:
            second.cookies.set(COOKIE, cookie)
            # Then B knows the session and its CSRF token
            assert second.get("/api/session").json()["csrf_token"] == csrf
    # When console A is restarted (a new instance over the same folder)
    with console_app(tmp_path) as restarted:
        restarted.cookies.set(COOKIE, cookie)
        # Then the session is still live, and signing out there ends it
        assert restarted.get("/api/session").status_code == 200
        assert restarted.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    with console_app(tmp_path) as again:
        again.cookies.set(COOKIE, cookie)
        assert again.get("/api/session").status_code == 401


def test_a_password_reset_on_the_command_line_ends_every_live_session(
        tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    with console_app(tmp_path) as laptop, console_app(tmp_path) as desktop:
        # Given the administrator signed in twice, on two consoles
        sign_in(laptop)
        sign_in(desktop)
        # When the password is reset with `katagate console password`
        monkeypatch.setattr(sys, "stdin", io.StringIO("a reset passphrase\n"))
        assert main(["console", "password", "--state-dir", str(tmp_path)]) == 0
        assert capsys.readouterr().out == "admin password changed; 2 session(s) ended\n"
        # Then both sessions are over at once, without a restart
        assert laptop.get("/api/session").status_code == 401
        assert desktop.get("/api/session").status_code == 401
        # And only the new password signs in
        assert laptop.post("/api/login", json={"name": "admin", "password": PASSWORD}
                           ).status_code == 401
        sign_in(laptop, "a reset passphrase")
