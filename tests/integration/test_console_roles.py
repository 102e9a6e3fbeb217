"""Given the real broker, an auditor (`katagate console user add NAME --role auditor`) reads
every view and exports the settings and rules (JSON, CSV), and every state-changing endpoint
refuses it with 403 naming the role, writing nothing to katagate.control."""

from __future__ import annotations

import csv
import io
import sys

import pytest

from katagate.cli import main
from tests.console_client import console_client, sign_in
from tests.integration.kafka_read import control_events
from tests.unit.test_console_tokens import CHANGES, CONTENT

pytestmark = pytest.mark.kafka
AUDITOR_PASSWORD = "an auditor's passphrase"


def add_auditor(state, monkeypatch: pytest.MonkeyPatch, capsys, name: str = "alice") -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(AUDITOR_PASSWORD + "\n"))
    assert main(["console", "user", "add", name, "--role", "auditor", "--state-dir",
                 str(state)]) == 0
    assert capsys.readouterr().out == f"account {name} added with the role auditor\n"


def test_an_auditor_reads_everything_and_every_change_is_refused_naming_the_role(
        kafka_settings, tmp_path, monkeypatch, capsys):
    state = tmp_path / "console"
    with console_client(state, kafka_settings) as (client, _console, _clock):
        admin_csrf = sign_in(client)
        assert client.post("/api/rules", json={"rule_id": "sales"},
                           headers={"X-CSRF-Token": admin_csrf}).status_code == 201
        client.cookies.clear()
        # Given an auditor, signed in
        add_auditor(state, monkeypatch, capsys)
        signed = client.post("/api/login", json={"name": "alice", "password": AUDITOR_PASSWORD})
        assert signed.status_code == 200
        assert signed.json()["role"] == "auditor"
        csrf = signed.json()["csrf_token"]
        before = len(control_events(kafka_settings))
        # Then every view reads
        for path in ("/api/settings", "/api/rules", "/api/rules/sales", "/api/rules/default",
                     "/api/tokens", "/api/session", "/settings/protection/kata", "/rules",
                     "/rules/sales", "/queue/kata-quarantine", "/tracking", "/backup",
                     "/queue/delivery"):
            assert client.get(path).status_code == 200, path
        # But not a message's content: the log's metadata is the auditor's, mail is not
        for path in CONTENT:
            answer = client.get(path)
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json() == {
                "error": "alice has the role auditor: it sees the log's metadata, not message "
                         "content", "field": "role", "allowed": ["admin"]}
        page = client.get("/backup/ABCDEFGH12")
        assert page.status_code == 403
        assert "not message content" in page.text
        assert "(auditor: read only)" in client.get("/rules").text
        # When it asks for any change, with its CSRF token
        for method, path, body in CHANGES:
            answer = client.request(method, path, json=body, headers={"X-CSRF-Token": csrf})
            # Then it is refused with 403 naming the role
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json() == {
                "error": "alice has the role auditor: it can read and export, not change "
                         "anything", "field": "role", "allowed": ["admin"]}
        # And nothing was written; its own sign-out still works
        assert len(control_events(kafka_settings)) == before
        assert client.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 204


def test_an_auditor_exports_the_settings_and_rules_as_json_and_csv(
        kafka_settings, tmp_path, monkeypatch, capsys):
    state = tmp_path / "console"
    with console_client(state, kafka_settings) as (client, _console, _clock):
        admin_csrf = sign_in(client)
        # Given a rule whose name a spreadsheet would run as a formula
        assert client.post("/api/rules", json={"rule_id": "sales", "name": "=HYPERLINK(1)",
                                               "kata": {"action": "reject"}},
                           headers={"X-CSRF-Token": admin_csrf}).status_code == 201
        client.cookies.clear()
        add_auditor(state, monkeypatch, capsys)
        assert client.post("/api/login", json={"name": "alice", "password": AUDITOR_PASSWORD}
                           ).status_code == 200
        # When the auditor exports
        rules_json = client.get("/api/export/rules.json")
        rules_csv = client.get("/api/export/rules.csv")
        settings_csv = client.get("/api/export/settings.csv")
        settings_json = client.get("/api/export/settings.json")
        # Then each is a download of what the views show
        assert rules_json.status_code == 200
        assert rules_json.headers["content-disposition"] == (
            'attachment; filename="katagate-rules.json"')
        assert rules_json.json()["exported_by"] == "alice"
        assert [r["rule_id"] for r in rules_json.json()["rules"]] == ["sales"]
        assert rules_csv.headers["content-type"] == "text/csv; charset=utf-8"
        rows = list(csv.DictReader(io.StringIO(rules_csv.text)))
        assert [r["rule_id"] for r in rows] == ["sales", "default"]
        assert rows[0]["name"] == "'=HYPERLINK(1)"  # quoted: a spreadsheet runs nothing
        assert rows[0]["action"] == "Reject"
        settings = dict(csv.reader(io.StringIO(settings_csv.text)))
        assert settings["central_node_port"] == "443"
        assert settings_json.json()["settings"]["central_node_port"] == 443
        # An export that does not exist names what does
        missing = client.get("/api/export/secrets.csv")
        assert missing.status_code == 404
        assert missing.json()["field"] == "file"
        assert "rules.csv" in missing.json()["allowed"]


def test_removing_an_account_or_resetting_its_password_ends_its_sessions(
        tmp_path, monkeypatch, capsys):
    state = tmp_path / "console"
    with console_client(state) as (client, console, _clock):
        add_auditor(state, monkeypatch, capsys)
        where = ("--state-dir", str(state))
        # A second account of one name, a bad role or name: refused, naming the field
        monkeypatch.setattr(sys, "stdin", io.StringIO(AUDITOR_PASSWORD + "\n"))
        assert main(["console", "user", "add", "alice", "--role", "auditor", *where]) == 2
        assert capsys.readouterr().err == ("katagate console user add: name: an account "
                                           "'alice' exists already\n")
        with pytest.raises(SystemExit):
            main(["console", "user", "add", "bob", "--role", "root", *where])
        assert main(["console", "user", "list", *where]) == 0
        assert '"role": "auditor"' in capsys.readouterr().out
        # Given the auditor signed in
        assert client.post("/api/login", json={"name": "alice", "password": AUDITOR_PASSWORD}
                           ).status_code == 200
        # When its password is reset on the command line, its session ends
        monkeypatch.setattr(sys, "stdin", io.StringIO("a fresh passphrase\n"))
        assert main(["console", "password", "--user", "alice", *where]) == 0
        assert capsys.readouterr().out == "alice's password changed; 1 session(s) ended\n"
        assert client.get("/api/session").status_code == 401
        # When it is removed, its new session ends and it cannot sign in again
        assert client.post("/api/login", json={"name": "alice", "password": "a fresh passphrase"}
                           ).status_code == 200
        assert main(["console", "user", "remove", "alice", *where]) == 0
        assert capsys.readouterr().out == "account alice removed; 1 session(s) ended\n"
        assert client.get("/api/session").status_code == 401
        assert client.post("/api/login", json={"name": "alice", "password": "a fresh passphrase"}
                           ).status_code == 401
        assert main(["console", "user", "remove", "admin", *where]) == 2
        assert [a.name for a in console.accounts.accounts()] == ["admin"]
