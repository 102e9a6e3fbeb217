"""The console over a real socket, served by uvicorn as `katagate console run` serves it: what
only shows with real connections and threads (parallel sign-ins)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from tests.console_client import PASSWORD, make_console, served


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
