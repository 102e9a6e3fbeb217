"""The console over a real socket, served by uvicorn as `katagate console run` serves it: what
only shows with real connections and threads (parallel sign-ins), and HTTPS served by the
console itself (the cookie's Secure flag, the TLS files checked at start)."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.error
import urllib.request

import pytest

from katagate.console.run import BadTlsFiles, check_tls
from katagate.console.settings import ConsoleSettings
from tests.console_client import PASSWORD, make_console, served
from tests.integration.test_ingest_harness import self_signed


def post_json(url: str, body: dict[str, str]) -> int:
    request = urllib.request.Request(  # noqa: S310 - a URL of the test's own console
        url, json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - our URL
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_parallel_wrong_sign_ins_get_no_more_tries_than_the_limit(tmp_path):
    # Given a console allowing 5 failed sign-ins a minute, on a real socket
    console, _clock = make_console(tmp_path, login_failures=5)
    attempts = 24
    answers: list[int] = []
    start = threading.Barrier(attempts)

    def guess(url: str) -> None:
        start.wait()
        answers.append(post_json(f"{url}/api/login",
                                 {"name": "admin", "password": "a wrong guess"}))

    try:
        with served(console) as url:
            # When 24 wrong passwords arrive at once, each from its own thread
            threads = [threading.Thread(target=guess, args=(url,)) for _ in range(attempts)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            # Then at most 5 were checked (401); the rest were refused unchecked (429)
            assert len(answers) == attempts
            assert answers.count(401) <= 5
            assert answers.count(401) + answers.count(429) == attempts
            # And even the right password waits now
            assert post_json(f"{url}/api/login", {"name": "admin", "password": PASSWORD}
                             ) == 429
    finally:
        console.close()


def sign_in_over(connection: http.client.HTTPConnection) -> tuple[int, str]:
    """POST /api/login with the right password: the status and the Set-Cookie header."""
    connection.request("POST", "/api/login", json.dumps({"name": "admin", "password": PASSWORD}),
                       {"Content-Type": "application/json"})
    answer = connection.getresponse()
    answer.read()
    return answer.status, answer.getheader("set-cookie", "")


def test_over_tls_the_session_cookie_is_secure(tmp_path):
    # Given a console serving HTTPS with a generated certificate
    cert, key = self_signed(tmp_path, "console.test")
    console, _clock = make_console(tmp_path / "state", tls_cert_file=cert, tls_key_file=key)
    try:
        with served(console) as url:
            assert url.startswith("https://")
            context = ssl.create_default_context(cafile=str(cert))
            context.check_hostname = False  # the certificate names console.test, not the IP
            port = int(url.rsplit(":", 1)[1])
            # When an administrator signs in over a real TLS connection
            connection = http.client.HTTPSConnection("127.0.0.1", port, context=context,
                                                     timeout=10)
            status, cookie = sign_in_over(connection)
            # Then the session cookie is sent over HTTPS only
            assert status == 200
            assert "; secure" in cookie.lower()
            assert connection.sock is not None
            assert connection.sock.version() in ("TLSv1.2", "TLSv1.3")
            connection.close()
            # And plain HTTP on that port gets no answer a browser would take
            plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                sign_in_over(plain)
            plain.close()
    finally:
        console.close()


def test_over_plain_http_the_session_cookie_is_not_secure(tmp_path):
    console, _clock = make_console(tmp_path)
    try:
        with served(console) as url:
            port = int(url.rsplit(":", 1)[1])
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status, cookie = sign_in_over(connection)
            connection.close()
            assert status == 200
            assert "katagate_session=" in cookie
            assert "secure" not in cookie.lower()
    finally:
        console.close()


def test_tls_files_are_checked_at_start_and_a_bad_pair_names_its_settings(tmp_path):
    cert, key = self_signed(tmp_path, "console.test")
    other = tmp_path / "other"
    other.mkdir()
    _other_cert, other_key = self_signed(other, "other.test")
    cases = [({"tls_cert_file": cert}, "setting tls_key_file (KATAGATE_CONSOLE_TLS_KEY_FILE)"),
             ({"tls_key_file": key}, "setting tls_cert_file (KATAGATE_CONSOLE_TLS_CERT_FILE)"),
             ({"tls_cert_file": tmp_path / "missing.pem", "tls_key_file": key},
              "setting tls_cert_file (KATAGATE_CONSOLE_TLS_CERT_FILE)"),
             ({"tls_cert_file": cert, "tls_key_file": other_key},
              "settings tls_cert_file and tls_key_file")]
    for files, named in cases:
        with pytest.raises(BadTlsFiles) as refused:
            check_tls(ConsoleSettings(state_dir=tmp_path, **files))
        assert str(refused.value).startswith(named)
    assert check_tls(ConsoleSettings(state_dir=tmp_path, tls_cert_file=cert, tls_key_file=key))
    assert not check_tls(ConsoleSettings(state_dir=tmp_path))
