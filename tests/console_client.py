"""The console app in-process for tests: FastAPI's TestClient over the real app, its account in
a temporary folder, its Kafka settings those of the test (a real broker) or an address nothing
listens on (for refusals, which are decided before Kafka is contacted)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from katagate.console.app import create_app
from katagate.console.run import http_server, serve
from katagate.console.service import Console, bootstrap
from katagate.console.settings import ConsoleSettings
from katagate.eventlog.settings import KafkaSettings
from katagate.projector.guard import token_file
from katagate.projector.live import LiveProjection
from katagate.projector.run import run_projector
from katagate.projector.settings import ProjectorSettings
from tests.integration.kata_harness import wait_for

PASSWORD = "correct horse battery staple"
# Nothing listens there: a test that reaches Kafka through it fails instead of passing.
NO_KAFKA = KafkaSettings(bootstrap_servers="127.0.0.1:9", topic_prefix="nokafka",
                         request_timeout_s=2.0)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_console(state: Path, kafka: KafkaSettings = NO_KAFKA, **overrides: Any
                 ) -> tuple[Console, Clock]:
    """A console as the entry point wires it, its clock the test's, its admin signed up."""
    settings = ConsoleSettings(state_dir=state, **overrides)
    console = bootstrap(settings, kafka)
    clock = Clock()
    console.clock = clock
    console.accounts.ensure_admin(settings.admin_name, PASSWORD)
    return console, clock


@contextmanager
def served(console: Console) -> Iterator[str]:
    """The console's app on a real socket (127.0.0.1, a free port), served by uvicorn as
    `katagate console run` serves it; yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = http_server(create_app(console), console.settings)
    thread = threading.Thread(
        target=lambda: asyncio.run(serve(server, listener, lambda: None, lambda: None)),
        daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "the console listening")
        scheme = "https" if console.settings.tls_cert_file else "http"
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@contextmanager
def console_client(state: Path, kafka: KafkaSettings = NO_KAFKA, **overrides: Any
                   ) -> Iterator[tuple[TestClient, Console, Clock]]:
    console, clock = make_console(state, kafka, **overrides)
    try:
        # base_url names the host the Origin check compares with.
        with TestClient(create_app(console), base_url="http://console.test") as client:
            yield client, console, clock
    finally:
        console.close()


def sign_in(client: TestClient, password: str = PASSWORD) -> str:
    """Sign in; the client keeps the cookie. Returns the CSRF token."""
    answer = client.post("/api/login", json={"name": "admin", "password": password})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["csrf_token"]
    return token


def console_token_file(projector_state: Path) -> Path:
    """A read token of the projector of `projector_state` in a 0600 file, as `katagate up`
    gives the console one."""
    holder = projector_state / "console-token"
    token_file(ProjectorSettings(state_dir=projector_state).token_path).ensure_in_file(
        "console", holder, "now")
    return holder


@contextmanager
def projector(kafka: KafkaSettings, state_dir: Path) -> Iterator[LiveProjection]:
    """The live projector in a thread, serving its HTTP views on a free port."""
    stop = threading.Event()
    started: list[LiveProjection] = []
    thread = threading.Thread(target=run_projector, daemon=True, kwargs={
        "kafka": kafka, "settings": ProjectorSettings(port=0, state_dir=state_dir),
        "stop": stop, "ready": started.append})
    thread.start()
    wait_for(lambda: started, 30, "the projector to listen")
    try:
        yield started[0]
    finally:
        stop.set()
        thread.join(timeout=30)
