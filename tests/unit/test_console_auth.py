"""The console's sign-in: scrypt password hashes, the admin account and its first password,
API tokens, sessions, the per-address login limit, and the answers a caller gets without a
session (401), with a wrong password (401, one generic message) or over the limit (429)."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from katagate.access.tokens import TokenError, match_token, token_digest
from katagate.console.accounts import AccountStore
from katagate.console.app import create_app
from katagate.console.passwords import (
    BadPassword,
    check_new_password,
    hash_password,
    needs_upgrade,
    verify_password,
)
from katagate.console.ratelimit import LoginLimiter, sign_in_keys
from katagate.console.sessions import Sessions
from katagate.console.state_db import StateDb
from tests.console_client import PASSWORD, console_client, make_console, sign_in
from tests.unit.test_console_pages import HOSTILE_NEXT

SALT = b"0123456789abcdef"
NOW = datetime(2026, 11, 29, tzinfo=UTC)


def scrypt_hash(password: str, salt: bytes = SALT) -> str:
    """A hash as the console's earlier releases stored it: `scrypt$N$r$p$salt$digest`."""
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return (f"scrypt$16384$8$1${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


# --- hashing ------------------------------------------------------------------------------------

def test_a_hash_is_salted_argon2id_with_its_parameters_and_verifies_only_the_password():
    stored = hash_password("s3cret passphrase")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password("s3cret passphrase", stored)
    assert not verify_password("s3cret passphrasE", stored)
    assert not verify_password("", stored)
    assert not needs_upgrade(stored)


def test_the_same_password_hashes_differently_each_time():
    assert hash_password("same password") != hash_password("same password")


def test_an_earlier_releases_scrypt_hash_still_verifies_and_needs_an_upgrade():
    stored = scrypt_hash("s3cret passphrase")
    assert verify_password("s3cret passphrase", stored)
    assert not verify_password("s3cret passphrasE", stored)
    assert needs_upgrade(stored)


@pytest.mark.parametrize("stored", ["", "scrypt$1$2", "bcrypt$16384$8$1$AAAA$AAAA",
                                    "scrypt$16384$8$1$not-base64!$AAAA",
                                    "scrypt$x$8$1$AAAA$AAAA", "$argon2id$v=19$m=1,t=1,p=1$AA$AA",
                                    "$argon2id$garbage"])
def test_a_malformed_stored_hash_matches_nothing(stored):
    assert not verify_password("anything", stored)


@pytest.mark.parametrize(("password", "problem"), [("short", "8..1024"),
                                                   ("x" * 1025, "8..1024"),
                                                   (" padded password ", "spaces")])
def test_a_new_password_must_be_8_to_1024_characters_without_outer_spaces(password, problem):
    with pytest.raises(BadPassword, match=problem):
        check_new_password(password)


# --- the account and its first password ---------------------------------------------------------

def test_the_first_start_generates_a_password_into_a_private_file(tmp_path):
    store = AccountStore(tmp_path / "console")
    first = store.ensure_admin("admin", None)
    assert first is not None
    assert first.generated_password
    assert first.password_file
    assert first.password_file.read_text().strip() == first.generated_password
    assert stat.S_IMODE(first.password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "console").stat().st_mode) == 0o700
    account = store.admin()
    assert verify_password(first.generated_password, account.password_hash)
    assert first.generated_password not in (tmp_path / "console" / "account.json").read_text()
    # A second start keeps the account.
    assert store.ensure_admin("admin", None) is None
    assert store.admin() == account


def test_a_password_from_the_environment_writes_no_password_file(tmp_path):
    store = AccountStore(tmp_path)
    first = store.ensure_admin("admin", PASSWORD)
    assert first is not None
    assert first.generated_password is None
    assert not store.password_file.exists()
    assert verify_password(PASSWORD, store.admin().password_hash)


def test_changing_the_password_removes_the_generated_one(tmp_path):
    store = AccountStore(tmp_path)
    store.ensure_admin("admin", None)
    store.set_password("a brand new password")
    assert not store.password_file.exists()
    assert verify_password("a brand new password", store.admin().password_hash)


def _store_with_scrypt_admin(folder):
    """Given an account stored by an earlier release, with an scrypt hash."""
    store = AccountStore(folder)
    store.ensure_admin("admin", PASSWORD)
    (folder / "account.json").write_text(json.dumps(
        {"name": "admin", "password_hash": scrypt_hash(PASSWORD)}))
    return store


def test_an_scrypt_account_signs_in_and_is_then_stored_as_argon2id(tmp_path):
    store = _store_with_scrypt_admin(tmp_path)
    # When it signs in with the right password
    assert store.check_password("admin", PASSWORD) is not None
    # Then its hash is argon2id from now on, and the password still signs in
    stored = store.admin().password_hash
    assert stored.startswith("$argon2id$")
    assert verify_password(PASSWORD, stored)
    assert store.check_password("admin", PASSWORD) is not None
    assert stat.S_IMODE((tmp_path / "account.json").stat().st_mode) == 0o600


def test_a_wrong_password_or_name_does_not_upgrade_an_scrypt_hash(tmp_path):
    store = _store_with_scrypt_admin(tmp_path)
    before = store.admin().password_hash
    assert store.check_password("admin", "not the password") is None
    assert store.check_password("root", PASSWORD) is None
    assert store.admin().password_hash == before


def test_an_scrypt_account_is_upgraded_by_a_sign_in_over_the_api(tmp_path):
    with console_client(tmp_path) as (client, console, _clock):
        (tmp_path / "account.json").write_text(json.dumps(
            {"name": "admin", "password_hash": scrypt_hash(PASSWORD)}))
        assert client.post("/api/login", json={"name": "admin", "password": "wrong one!"}
                           ).status_code == 401
        assert console.accounts.admin().password_hash.startswith("scrypt$")
        sign_in(client)
        assert console.accounts.admin().password_hash.startswith("$argon2id$")


def test_tokens_are_kept_as_digests_and_can_be_revoked(tmp_path):
    store = AccountStore(tmp_path)
    token = store.create_token("deploy", NOW)
    assert token.startswith("kgt_")
    assert len(token) > 40
    assert token not in (tmp_path / "tokens.json").read_text()
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
    (record,) = store.tokens()
    assert record.sha256 == token_digest(token)
    assert match_token(store.tokens(), token) == record
    assert match_token(store.tokens(), token + "x") is None
    with pytest.raises(TokenError, match="exists already"):
        store.create_token("deploy", NOW)
    with pytest.raises(TokenError, match="name: must be"):
        store.create_token("no spaces please", NOW)
    assert store.revoke_token("deploy")
    assert not store.revoke_token("deploy")
    assert match_token(store.tokens(), token) is None


# --- sessions and the login limit (pure: the time comes in) -------------------------------------

def test_a_session_ends_after_its_idle_time_or_its_maximum_age(tmp_path):
    sessions = Sessions(StateDb(tmp_path / "console.sqlite3"), idle_s=60, max_s=300)
    sessions.open("admin", "sid", "csrf", now=0)
    assert sessions.get("sid", now=59) is not None  # seen: the idle clock restarts
    assert sessions.get("sid", now=118) is not None
    assert sessions.get("other", now=118) is None
    sessions.open("admin", "old", "csrf", now=0)
    assert sessions.get("old", now=61) is None
    for t in range(50, 300, 50):
        assert sessions.get("sid", now=t) is not None
    assert sessions.get("sid", now=300) is None


def test_closing_all_sessions_of_a_user(tmp_path):
    sessions = Sessions(StateDb(tmp_path / "console.sqlite3"), idle_s=60, max_s=300)
    sessions.open("admin", "a", "x", 0)
    sessions.open("admin", "b", "y", 0)
    sessions.open("auditor", "c", "z", 0)
    assert sessions.close_all("admin") == 2
    assert sessions.get("a", 1) is None
    assert sessions.get("b", 1) is None
    assert sessions.get("c", 1) is not None


def test_sessions_are_kept_by_digest_in_a_private_file_another_instance_reads(tmp_path):
    path = tmp_path / "state" / "console.sqlite3"
    Sessions(StateDb(path), idle_s=60, max_s=300).open("admin", "the-session-id", "csrf", 0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"the-session-id" not in path.read_bytes()
    # Another instance over the same file (a restart, a second console) finds it
    session = Sessions(StateDb(path), idle_s=60, max_s=300).get("the-session-id", 1)
    assert session is not None
    assert (session.user, session.csrf_token) == ("admin", "csrf")


def test_five_failures_a_minute_block_the_address_until_the_oldest_leaves_the_window(tmp_path):
    limiter = LoginLimiter(StateDb(tmp_path / "console.sqlite3"), limit=5, window_s=60)
    for t in range(5):
        assert limiter.admit(["10.0.0.1"], now=100 + t) is None  # admitted, counted
    assert limiter.admit(["10.0.0.1"], now=105) == 55
    assert limiter.admit(["10.0.0.2"], now=105) is None  # per key
    assert limiter.admit(["10.0.0.1"], now=160) is None  # the first failure has left
    assert limiter.admit(["10.0.0.1"], now=160) == 1


def test_a_success_forgets_the_failures(tmp_path):
    limiter = LoginLimiter(StateDb(tmp_path / "console.sqlite3"), limit=2, window_s=60)
    assert limiter.admit(["a"], 0) is None
    limiter.succeeded(["a"])
    assert limiter.admit(["a"], 1) is None
    assert limiter.admit(["a"], 1) is None
    assert limiter.admit(["a"], 1) == 60


def test_failures_counted_by_one_console_count_on_another_over_the_same_folder(tmp_path):
    # Given two consoles over one state folder, each with its own limiter
    first = LoginLimiter(StateDb(tmp_path / "console.sqlite3"), limit=2, window_s=60)
    second = LoginLimiter(StateDb(tmp_path / "console.sqlite3"), limit=2, window_s=60)
    # When two attempts as admin fail on the first
    for _ in range(2):
        assert first.admit(sign_in_keys("10.0.0.1", "admin"), 0) is None
    # Then the second refuses admin too, from any address
    assert second.admit(sign_in_keys("10.0.0.2", "admin"), 1) == 59


def test_an_attempt_is_counted_against_its_address_and_its_account(tmp_path):
    limiter = LoginLimiter(StateDb(tmp_path / "console.sqlite3"), limit=3, window_s=60)
    # Given three failures as admin, each from another address
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert limiter.admit(sign_in_keys(address, "admin"), 0) is None
    # Then a fourth address is refused for admin (and names are compared case-blind)
    assert limiter.admit(sign_in_keys("10.0.0.4", "Admin"), 1) == 59
    # But may try another account, and a refused attempt counted nothing against it
    assert limiter.admit(sign_in_keys("10.0.0.4", "auditor"), 1) is None


# --- through the API ----------------------------------------------------------------------------

def test_without_a_session_the_api_answers_401_and_pages_send_to_sign_in(tmp_path):
    with console_client(tmp_path) as (client, _console, _clock):
        for method, path in [("GET", "/api/settings"), ("PUT", "/api/settings"),
                             ("GET", "/api/rules"), ("POST", "/api/kata/enable"),
                             ("GET", "/api/quarantine/messages"),
                             ("POST", "/api/quarantine/messages/ABCDEFGH12/send-now")]:
            answer = client.request(method, path, json={})
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"].startswith("not signed in")
            assert answer.headers["www-authenticate"] == "Bearer"
        page = client.get("/rules", follow_redirects=False)
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=/rules")
        assert client.get("/login").status_code == 200


def test_a_wrong_password_or_name_gets_one_generic_401(tmp_path):
    with console_client(tmp_path) as (client, _console, _clock):
        wrong_password = client.post("/api/login", json={"name": "admin", "password": "nope"})
        wrong_name = client.post("/api/login", json={"name": "root", "password": PASSWORD})
        assert wrong_password.status_code == wrong_name.status_code == 401
        assert wrong_password.json() == wrong_name.json() == {
            "error": "wrong user name or password", "field": None, "allowed": None}
        assert "set-cookie" not in wrong_password.headers


def test_signing_in_sets_an_httponly_samesite_strict_cookie(tmp_path):
    with console_client(tmp_path) as (client, _console, _clock):
        answer = client.post("/api/login", json={"name": "admin", "password": PASSWORD})
        assert answer.status_code == 200
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/" in cookie
        session = client.get("/api/session").json()
        assert session["user"] == "admin"
        assert session["csrf_token"] == answer.json()[
            "csrf_token"]
        # Signed in, the sign-in page sends on to where the administrator was going.
        again = client.get("/login?next=/rules", follow_redirects=False)
        assert (again.status_code, again.headers["location"]) == (303, "/rules")


def test_the_sixth_failure_in_a_minute_gets_429_with_retry_after_even_for_the_right_password(
        tmp_path):
    with console_client(tmp_path) as (client, _console, clock):
        for _ in range(5):
            assert client.post("/api/login", json={"name": "admin", "password": "guess"}
                               ).status_code == 401
            clock.now += 1
        limited = client.post("/api/login", json={"name": "admin", "password": PASSWORD})
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "55"  # the first failure, 5 s ago, + 60 s
        assert limited.json()["error"].startswith("too many failed sign-ins")
        clock.now += 55
        assert client.post("/api/login", json={"name": "admin", "password": PASSWORD}
                           ).status_code == 200


def test_a_login_from_another_site_is_refused(tmp_path):
    with console_client(tmp_path) as (client, _console, _clock):
        answer = client.post("/api/login", json={"name": "admin", "password": PASSWORD},
                             headers={"Origin": "https://evil.example"})
        assert answer.status_code == 403
        assert answer.json()["field"] == "Origin"
        same = client.post("/api/login", json={"name": "admin", "password": PASSWORD},
                           headers={"Origin": "http://console.test"})
        assert same.status_code == 200


def test_an_expired_session_is_401_again(tmp_path):
    with console_client(tmp_path, session_idle_s=60) as (client, _console, clock):
        sign_in(client)
        assert client.get("/api/session").status_code == 200
        clock.now += 61
        assert client.get("/api/session").status_code == 401


def test_signing_out_ends_the_session(tmp_path):
    with console_client(tmp_path) as (client, _console, _clock):
        csrf = sign_in(client)
        assert client.post("/api/logout").status_code == 403  # a change: CSRF needed
        assert client.post("/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert client.get("/api/session").status_code == 401


def test_an_api_token_authenticates_scripts_and_a_revoked_one_does_not(tmp_path):
    with console_client(tmp_path) as (client, console, _clock):
        csrf = sign_in(client)
        created = client.post("/api/tokens", json={"name": "deploy"},
                              headers={"X-CSRF-Token": csrf})
        assert created.status_code == 201
        token = created.json()["token"]
        client.cookies.clear()
        bearer = {"Authorization": f"Bearer {token}"}
        me = client.get("/api/session", headers=bearer).json()
        assert me == {"user": "admin", "actor": "admin (token deploy)", "role": "admin",
                      "scope": "read", "csrf_token": None}
        # A token cannot mint tokens (only a signed-in administrator can).
        assert client.post("/api/tokens", json={"name": "x"}, headers=bearer
                           ).status_code == 403
        console.accounts.revoke_token("deploy")
        answer = client.get("/api/session", headers=bearer)
        assert answer.status_code == 401
        assert answer.json()["error"] == "API token unknown or revoked"
        assert client.get("/api/session", headers={"Authorization": "Basic abc"}
                          ).status_code == 401


def test_changing_the_password_ends_every_session_and_the_old_password(tmp_path):
    with console_client(tmp_path) as (client, _console, _clock):
        csrf = sign_in(client)
        headers = {"X-CSRF-Token": csrf}
        short = client.put("/api/account/password", headers=headers,
                           json={"current_password": PASSWORD, "new_password": "short"})
        assert short.status_code == 422
        assert short.json()["field"] == "new_password"
        wrong = client.put("/api/account/password", headers=headers,
                           json={"current_password": "wrong", "new_password": "long enough!"})
        assert wrong.status_code == 401
        done = client.put("/api/account/password", headers=headers,
                          json={"current_password": PASSWORD, "new_password": "long enough!"})
        assert done.status_code == 204
        assert client.get("/api/session").status_code == 401
        assert client.post("/api/login", json={"name": "admin", "password": PASSWORD}
                           ).status_code == 401
        sign_in(client, "long enough!")


def test_sign_ins_are_counted_by_outcome_for_the_metrics_listener_not_on_the_console(tmp_path):
    from prometheus_client import REGISTRY, generate_latest

    def count(outcome: str) -> float:
        text = generate_latest(REGISTRY).decode()
        line = next(line for line in text.splitlines()
                    if line.startswith(f'katagate_console_sign_ins_total{{outcome="{outcome}"}}'))
        return float(line.split()[-1])

    with console_client(tmp_path) as (client, _console, _clock):
        refused, ok = count("refused"), count("ok")
        client.post("/api/login", json={"name": "admin", "password": "nope"})
        client.post("/api/login", json={"name": "admin", "password": PASSWORD})
        assert (count("refused"), count("ok")) == (refused + 1, ok + 1)
        # Unauthenticated figures are served on their own address (metrics_host/metrics_port),
        # not beside the console's pages.
        assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("hostile", HOSTILE_NEXT)
def test_a_hostile_next_after_sign_in_lands_on_the_home_page(tmp_path, hostile):
    with console_client(tmp_path) as (client, _console, _clock):
        query = f"/login?next={quote(hostile, safe='')}"
        # Given the sign-in page asked with a next= leading off the site
        page = client.get(query)
        # Then the page's form goes to / once signed in
        assert 'data-next="/"' in page.text
        # And a signed-in browser sent there goes to /, never off the site
        sign_in(client)
        again = client.get(query, follow_redirects=False)
        assert (again.status_code, again.headers["location"]) == (303, "/")


def test_failures_as_one_account_from_many_addresses_are_refused_with_429(tmp_path):
    console, _clock = make_console(tmp_path, login_failures=3)
    app = create_app(console)
    try:
        # Given three wrong passwords for admin, each from another client address
        for n in range(3):
            with TestClient(app, base_url="http://console.test", client=(f"10.0.0.{n}", 1)) as c:
                assert c.post("/api/login", json={"name": "admin", "password": "guess!"}
                              ).status_code == 401
        # When a fourth address tries admin, even with the right password
        with TestClient(app, base_url="http://console.test", client=("10.0.0.9", 1)) as c:
            refused = c.post("/api/login", json={"name": "admin", "password": PASSWORD})
        # Then it is refused unchecked
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60"
    finally:
        console.close()
