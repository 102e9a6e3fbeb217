"""The console's answers that need no broker: /healthz, the home page's redirect, the API
tokens made with `katagate console token create` listed and revoked over the API, and a Kafka
that does not answer (503, as JSON for the API and as a page for a browser)."""

from __future__ import annotations

import pytest
from markupsafe import escape

from katagate.cli import main
from tests.console_client import console_client, sign_in


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    def run_cli(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().out

    return run_cli


def test_healthz_answers_without_a_session_and_with_the_security_headers(tmp_path):
    with console_client(tmp_path / "console") as (client, _console, _clock):
        answer = client.get("/healthz")
        assert answer.status_code == 200
        assert answer.json() == {"status": "ok"}
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        # It is not part of the documented API
        assert "/healthz" not in client.get("/api/openapi.json").json()["paths"]


def test_the_home_page_sends_the_browser_to_the_kata_protection_settings(tmp_path):
    with console_client(tmp_path / "console") as (client, _console, _clock):
        home = client.get("/", follow_redirects=False)
        assert home.status_code == 303
        assert home.headers["location"] == "/settings/protection/kata"
        # Without a session, the page it names sends the browser to sign in
        page = client.get("/settings/protection/kata", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/settings/protection/kata"


def test_tokens_made_on_the_command_line_are_listed_and_revoked_over_the_api(tmp_path, cli):
    state = tmp_path / "console"
    with console_client(state) as (client, _console, _clock):
        # Given two tokens made with `katagate console token create` in the console's folder
        code, ci = cli("console", "token", "create", "ci", "--scope", "admin", "--state-dir",
                       str(state))
        assert code == 0
        code, deploy = cli("console", "token", "create", "deploy", "--state-dir", str(state))
        assert code == 0
        ci_auth = {"Authorization": f"Bearer {ci.strip()}"}
        deploy_auth = {"Authorization": f"Bearer {deploy.strip()}"}

        # When a script lists them with one of them
        listed = client.get("/api/tokens", headers=ci_auth)
        # Then it gets the names and creation times, never a token or its digest
        assert listed.status_code == 200
        tokens = listed.json()["tokens"]
        assert [t["name"] for t in tokens] == ["ci", "deploy"]
        assert all(set(t) == {"name", "created_at", "scope", "expires_at"} for t in tokens)
        assert [t["scope"] for t in tokens] == ["admin", "read"]
        assert ci.strip() not in listed.text

        # Without a token or a session: 401
        assert client.get("/api/tokens").status_code == 401

        # When the ci token revokes the deploy one
        gone = client.delete("/api/tokens/deploy", headers=ci_auth)
        assert (gone.status_code, gone.content) == (204, b"")
        # Then the deploy token is refused from the next request, and the CLI agrees
        refused = client.get("/api/tokens", headers=deploy_auth)
        assert refused.status_code == 401
        assert refused.json()["error"] == "API token unknown or revoked"
        assert refused.headers["www-authenticate"] == "Bearer"
        assert [t["name"] for t in client.get("/api/tokens", headers=ci_auth).json()[
            "tokens"]] == ["ci"]
        code, out = cli("console", "token", "list", "--state-dir", str(state))
        assert '"name": "deploy"' not in out
        assert '"name": "ci"' in out

        # Revoking it again, or a token that never was: 404 naming the field
        again = client.delete("/api/tokens/deploy", headers=ci_auth)
        assert again.status_code == 404
        assert again.json() == {"error": "name: no token 'deploy'", "field": "name",
                                "allowed": None}

        # A token revoked on the command line is refused too
        assert cli("console", "token", "revoke", "ci", "--state-dir", str(state))[0] == 0
        assert client.get("/api/tokens", headers=ci_auth).status_code == 401


def test_a_signed_in_administrator_lists_and_revokes_tokens_with_the_csrf_token(tmp_path):
    with console_client(tmp_path / "console") as (client, _console, _clock):
        csrf = sign_in(client)
        made = client.post("/api/tokens", json={"name": "nightly"},
                           headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201
        assert [t["name"] for t in client.get("/api/tokens").json()["tokens"]] == ["nightly"]
        # A state-changing request without the CSRF token is refused and revokes nothing
        assert client.delete("/api/tokens/nightly").status_code == 403
        assert [t["name"] for t in client.get("/api/tokens").json()["tokens"]] == ["nightly"]
        assert client.delete("/api/tokens/nightly",
                             headers={"X-CSRF-Token": csrf}).status_code == 204
        assert client.get("/api/tokens").json() == {"tokens": []}


def test_when_kafka_does_not_answer_the_api_says_503_and_a_page_says_why(tmp_path):
    with console_client(tmp_path / "console", read_your_writes_s=1.0) as (client, _c, _clk):
        csrf = sign_in(client)
        answer = client.get("/api/settings")
        assert answer.status_code == 503
        body = answer.json()
        assert set(body) == {"error", "field", "allowed"}
        assert (body["field"], body["allowed"]) == (None, None)
        assert "configuration" in body["error"]
        # A page: the error page, with the same status and reason, not a traceback
        page = client.get("/settings/protection/kata")
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert "The console cannot show this page now" in page.text
        assert str(escape(body["error"])) in page.text
        # A change that cannot reach Kafka: 503 too, and nothing is pretended
        change = client.post("/api/settings/defaults", headers={"X-CSRF-Token": csrf})
        assert change.status_code == 503
        assert change.json()["error"]
