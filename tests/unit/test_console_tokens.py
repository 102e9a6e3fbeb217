"""API tokens' scope (read: GET only; admin: every change, revoking tokens too) and expiry,
made over the API or with `katagate console token create --scope --expires`, and tokens of an
earlier release (no scope, no expiry) working as they did and then given scope admin."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from katagate.access.tokens import token_digest
from katagate.cli import main
from tests.console_client import console_client, sign_in


def make_token(client, csrf: str, name: str, **fields: object) -> str:
    answer = client.post("/api/tokens", json={"name": name, **fields},
                         headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Every state-changing endpoint of the API; a refusal comes before Kafka is reached (NO_KAFKA
# would answer 503), so nothing is written.
CHANGES = [("PUT", "/api/settings", {"central_node_port": 8443}),
           ("POST", "/api/settings/defaults", None), ("POST", "/api/kata/enable", None),
           ("POST", "/api/kata/disable", None), ("POST", "/api/rules", {"rule_id": "r1"}),
           ("PUT", "/api/rules/r1", {"name": "x"}), ("PUT", "/api/rules/r1/kata",
                                                     {"enabled": True}),
           ("DELETE", "/api/rules/r1", None),
           ("POST", "/api/quarantine/messages/ABCDEFGH12/send-now", None),
           ("DELETE", "/api/quarantine/messages/ABCDEFGH12", None),
           ("POST", "/api/quarantine/actions", {"action": "delete",
                                                "message_ids": ["ABCDEFGH12"]}),
           ("POST", "/api/backup/copies/ABCDEFGH12/resend", {"to": None}),
           ("DELETE", "/api/backup/copies/ABCDEFGH12", None),
           ("POST", "/api/queue/messages/ABCDEFGH12/retry", None),
           ("POST", "/api/queue/messages/ABCDEFGH12/bounce", None),
           ("DELETE", "/api/queue/messages/ABCDEFGH12", None),
           ("POST", "/api/tokens", {"name": "more"}), ("DELETE", "/api/tokens/other", None),
           ("PUT", "/api/account/password", {"current_password": "x", "new_password": "y"})]

# Mail content: an administrator's (an `admin` token's) to see, not an auditor's.
CONTENT = ["/api/backup/copies/ABCDEFGH12", "/api/backup/copies/ABCDEFGH12/eml"]


def test_a_read_token_reads_but_every_change_is_refused_naming_its_scope(tmp_path):
    with console_client(tmp_path) as (client, console, _clock):
        csrf = sign_in(client)
        reader = make_token(client, csrf, "dashboard")  # the default scope: read
        make_token(client, csrf, "other", scope="admin")
        client.cookies.clear()
        # Given a read token, it may read
        assert client.get("/api/tokens", headers=bearer(reader)).status_code == 200
        assert client.get("/api/session", headers=bearer(reader)).status_code == 200
        # When it asks for any change
        for method, path, body in CHANGES:
            answer = client.request(method, path, json=body, headers=bearer(reader))
            # Then it is refused with 403 naming the token's scope, and nothing changes
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["error"] == ("API token 'dashboard' has scope read: it cannot "
                                              "change anything (make one with scope admin)")
            assert answer.json()["field"] == "Authorization"
        assert [t.name for t in console.accounts.tokens()] == ["dashboard", "other"]
        # And a message's content (a Backup copy's view or download) is not for it either
        for path in CONTENT:
            answer = client.get(path, headers=bearer(reader))
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["error"] == ("API token 'dashboard' has scope read: it cannot "
                                              "see message content (make one with scope admin)")


def test_only_an_admin_token_revokes_other_tokens(tmp_path):
    with console_client(tmp_path) as (client, console, _clock):
        csrf = sign_in(client)
        reader = make_token(client, csrf, "reader", scope="read")
        admin = make_token(client, csrf, "deployer", scope="admin")
        make_token(client, csrf, "victim")
        client.cookies.clear()
        assert client.delete("/api/tokens/victim", headers=bearer(reader)).status_code == 403
        assert client.delete("/api/tokens/deployer", headers=bearer(reader)).status_code == 403
        assert client.delete("/api/tokens/victim", headers=bearer(admin)).status_code == 204
        assert [t.name for t in console.accounts.tokens()] == ["reader", "deployer"]


def test_a_token_stops_working_when_it_expires(tmp_path):
    with console_client(tmp_path) as (client, _console, clock):
        csrf = sign_in(client)
        made = client.post("/api/tokens", json={"name": "short", "expires_days": 1},
                           headers={"X-CSRF-Token": csrf}).json()
        assert made["scope"] == "read"
        assert datetime.fromisoformat(made["expires_at"]) == datetime.fromtimestamp(
            clock.now + 86400, UTC)
        client.cookies.clear()
        clock.now += 86400 - 1
        assert client.get("/api/session", headers=bearer(made["token"])).status_code == 200
        clock.now += 1
        answer = client.get("/api/session", headers=bearer(made["token"]))
        assert answer.status_code == 401
        assert answer.json()["error"].startswith("API token 'short' expired at ")


@pytest.mark.parametrize(("fields", "field"), [
    ({"scope": "root"}, "scope"), ({"expires_days": 0}, "expires_days"),
    ({"expires_days": 3651}, "expires_days"), ({"expires_days": "soon"}, "expires_days")])
def test_a_bad_scope_or_expiry_is_refused_naming_the_field(tmp_path, fields, field):
    with console_client(tmp_path) as (client, console, _clock):
        csrf = sign_in(client)
        answer = client.post("/api/tokens", json={"name": "t", **fields},
                             headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 422
        assert answer.json()["field"] == field
        assert console.accounts.tokens() == []


def test_tokens_of_an_earlier_release_keep_working_then_are_given_scope_admin(tmp_path):
    # Given a tokens.json written by an earlier release: no scope, no expiry
    old, other = "kgt_" + "a" * 43, "kgt_" + "b" * 43
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": [
        {"name": "old", "sha256": token_digest(old), "created_at": "2025-01-01T00:00:00+00:00"},
        {"name": "other", "sha256": token_digest(other),
         "created_at": "2025-01-01T00:00:00+00:00"}]}))
    with console_client(tmp_path) as (client, console, _clock):
        # Then it works as it did: it may change things (here, revoke another token)
        assert client.get("/api/tokens", headers=bearer(old)).json()["tokens"][0][
            "scope"] == "admin"
        assert client.delete("/api/tokens/other", headers=bearer(old)).status_code == 204
        # When the console starts (or a token command runs), the file is migrated
        assert console.accounts.migrate_tokens() == 1
        (record,) = console.accounts.tokens()
        assert (record.scope, record.expires_at) == ("admin", None)
        assert console.accounts.migrate_tokens() == 0
        assert client.get("/api/session", headers=bearer(old)).status_code == 200


def test_token_create_on_the_command_line_takes_scope_and_expiry(tmp_path, capsys):
    where = ("--state-dir", str(tmp_path))
    assert main(["console", "token", "create", "ops", "--scope", "admin", "--expires", "7",
                 *where]) == 0
    assert main(["console", "token", "create", "viewer", *where]) == 0
    capsys.readouterr()
    assert main(["console", "token", "list", *where]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    assert listed["ops"]["scope"] == "admin"
    ops_days = (datetime.fromisoformat(listed["ops"]["expires_at"])
                - datetime.fromisoformat(listed["ops"]["created_at"]))
    assert ops_days.days == 7
    assert listed["viewer"]["scope"] == "read"
    assert (datetime.fromisoformat(listed["viewer"]["expires_at"])
            - datetime.fromisoformat(listed["viewer"]["created_at"])).days == 90
    # A number of days out of range is refused naming the option and its range
    assert main(["console", "token", "create", "x", "--expires", "0", *where]) == 2
    assert capsys.readouterr().err == ("katagate console token create: --expires: must be "
                                       "1..3650 days, got 0\n")
    with pytest.raises(SystemExit):
        main(["console", "token", "create", "x", "--scope", "root", *where])
