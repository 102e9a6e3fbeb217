"""Who may read the projector's views, as pure decisions (projector/guard.py) and the request
head they are made on (projector/server.py's parser): the Host names, the bearer token, the
answers naming the problem, the settings' bounds."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
from pydantic import ValidationError

from katagate.access.tokens import TokenRecord
from katagate.projector import guard
from katagate.projector.server import HeadError, parse_head, render
from katagate.projector.settings import ProjectorSettings

RECORD = TokenRecord("script", "digest", "now")


def match(token: str) -> TokenRecord | None:
    return RECORD if token == "kgp_good" else None


def test_by_default_the_loopback_names_and_the_listen_address_with_and_without_the_port():
    names = guard.host_names(None, "127.0.0.1", 8080)
    assert names == {"127.0.0.1", "127.0.0.1:8080", "localhost", "localhost:8080", "[::1]",
                     "[::1]:8080"}
    assert "10.0.0.5:8080" in guard.host_names(None, "10.0.0.5", 8080)
    assert "[::1]:9" in guard.host_names(None, "::1", 9)
    # A wildcard is no name a client asks by.
    wildcard = "0.0.0.0"  # noqa: S104 - a listen address, not bound here
    assert guard.host_names(None, wildcard, 8080) == guard.host_names(None, "127.0.0.1", 8080)


def test_configured_names_replace_the_default_and_a_given_port_is_that_port_only():
    names = guard.host_names(["Projector", "views.example.net:443"], "0.0.0.0", 8080)  # noqa: S104
    assert names == {"projector", "projector:8080", "views.example.net:443"}


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost", "LOCALHOST:8080", "[::1]:8080",
                                  " localhost:8080 "])
def test_a_host_naming_this_projector_passes(host):
    assert guard.check_host([host], guard.host_names(None, "127.0.0.1", 8080)) is None


@pytest.mark.parametrize(("values", "named"), [
    (["evil.example:8080"], "'evil.example:8080' is not a name of this projector"),
    (["localhost:8081"], "'localhost:8081' is not a name"),
    (["localhost."], "'localhost.' is not a name"),
    ([], "no Host header"),
    (["localhost", "localhost"], "more than one Host header"),
])
def test_any_other_host_is_misdirected_naming_the_setting(values, named):
    reply = guard.check_host(values, guard.host_names(None, "127.0.0.1", 8080))
    assert reply is not None
    assert reply.status == HTTPStatus.MISDIRECTED_REQUEST
    error = json.loads(reply.body)["error"]
    assert named in error
    assert "KATAGATE_PROJECTOR_ALLOWED_HOSTS" in error


def test_a_valid_bearer_token_passes():
    assert guard.check_token(["Bearer kgp_good"], match) is None
    assert guard.check_token(["bearer   kgp_good "], match) is None


@pytest.mark.parametrize(("values", "problem", "challenge"), [
    ([], "missing_token", 'Bearer realm="katagate-projector"'),
    (["Basic dXNlcjpwYXNz"], "invalid_request", 'error="invalid_request"'),
    (["Bearer"], "invalid_request", 'error="invalid_request"'),
    (["Bearer kgp_good", "Bearer kgp_good"], "invalid_request", 'error="invalid_request"'),
    (["Bearer kgp_revoked"], "invalid_token", 'error="invalid_token"'),
])
def test_no_or_a_bad_token_is_401_naming_the_problem(values, problem, challenge):
    reply = guard.check_token(values, match)
    assert reply is not None
    assert reply.status == HTTPStatus.UNAUTHORIZED
    assert json.loads(reply.body)["problem"] == problem
    (authenticate,) = [v for k, v in reply.headers if k == "WWW-Authenticate"]
    assert authenticate.startswith("Bearer")
    assert challenge in authenticate


def test_busy_says_when_to_retry():
    reply = guard.busy(32)
    assert reply.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert ("Retry-After", "1") in reply.headers
    assert json.loads(reply.body)["limit"] == 32


def test_a_request_head_is_parsed_with_its_headers_by_lower_case_name():
    request = parse_head(b"GET /messages?limit=5 HTTP/1.1\r\nHost: localhost:8080\r\n"
                         b"Authorization: Bearer x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert (request.method, request.path, request.query) == ("GET", "/messages", "limit=5")
    assert request.headers["host"] == ["localhost:8080"]
    assert request.headers["x-a"] == ["1", "2"]
    assert request.keep_alive
    assert not parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive
    assert not parse_head(b"GET / HTTP/1.0\r\n\r\n").keep_alive


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /\r\n\r\n", 400),
    (b"GET http://elsewhere/ HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
])
def test_a_bad_head_is_refused(head, status):
    with pytest.raises(HeadError) as refused:
        parse_head(head)
    assert refused.value.reply.status == status
    assert json.loads(refused.value.reply.body)["error"]


def test_an_answer_is_rendered_with_its_length_and_no_store():
    raw = render(guard.busy(2), with_body=True, close=True)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 1" in head
    assert b"\r\nCache-Control: no-store" in head
    assert b"\r\nConnection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert render(guard.busy(2), with_body=False, close=False).endswith(b"\r\n\r\n")


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("max_requests", 0, "greater than or equal to 1"),
    ("max_requests", 100_000, "less than or equal to 1024"),
    ("request_timeout_s", 0, "greater than 0"),
    ("max_connections", 0, "greater than or equal to 1"),
    ("metrics_port", 70000, "less than or equal to 65535"),
    ("allowed_hosts", ["evil host"], "not a host name"),
    ("allowed_hosts", [], "at least 1 item"),
])
def test_a_bad_setting_names_itself_and_its_range(setting, value, named):
    with pytest.raises(ValidationError) as refused:
        ProjectorSettings(**{setting: value})
    (error,) = refused.value.errors()
    assert error["loc"] == (setting,)
    assert named in error["msg"]


def test_the_tokens_live_in_the_state_folder_unless_a_file_is_named(tmp_path):
    assert ProjectorSettings(state_dir=tmp_path).token_path == tmp_path / "tokens.json"
    assert ProjectorSettings(tokens_file=tmp_path / "t.json").token_path == tmp_path / "t.json"
    assert guard.token_file(tmp_path / "t.json").prefix == guard.TOKEN_PREFIX
