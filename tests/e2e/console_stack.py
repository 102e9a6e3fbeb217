"""What the browser tests of the console drive: `katagate console run` as its own process, and a
stack of a whole gateway, that console and a headless Chromium, with the few steps every test
takes (open a page, read an element, sign in, wait for a write to land)."""

from __future__ import annotations

import base64
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from katagate.admin.errors import InvalidCommand
from katagate.admin.settings import validate_settings
from tests.e2e.browser import screenshot, until
from tests.e2e.gateway import Gateway
from tests.integration.kata_harness import ROOT


def mail(subject: str, body: bytes, to: str) -> bytes:
    return (f"From: alice@example.org\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <"
            f"{base64.b16encode(subject.encode()[:12]).decode()}@example.org>\r\n\r\n"
            ).encode() + body + b"\r\n"


class ConsoleProcess:
    """`katagate console run` on a free port, its state in its own folder."""

    def __init__(self, gateway: Gateway, state: Path, projector_url: str,
                 projector_token_file: Path) -> None:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": gateway.kafka.bootstrap_servers,
               "KATAGATE_TOPIC_PREFIX": gateway.kafka.topic_prefix,
               "KATAGATE_CONSOLE_METRICS_PORT": "0"}
        env.pop("KATAGATE_CONSOLE_ADMIN_PASSWORD", None)
        self.state = state
        self.process = subprocess.Popen(
            [sys.executable, "-m", "katagate", "console", "run", "--port", "0",
             "--state-dir", str(state), "--projector-url", projector_url,
             "--projector-token-file", str(projector_token_file)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [lines.put(line) for line in stdout],
                         daemon=True).start()
        self.said: list[str] = []
        while not self.said or not self.said[-1].startswith("console="):
            self.said.append(lines.get(timeout=60))
        self.url = "http://" + self.said[-1].strip().split("=", 1)[1]
        self.metrics_url = next("http://" + line.strip().split("=", 1)[1] + "/metrics"
                                for line in self.said if line.startswith("console-metrics="))

    @property
    def password(self) -> str:
        return (self.state / "initial-admin-password").read_text().strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Stack:
    def __init__(self, gateway: Gateway, console: ConsoleProcess, driver: Any) -> None:
        self.gateway = gateway
        self.console = console
        self.driver = driver

    # -- the browser --------------------------------------------------------------------------

    def open(self, path: str) -> None:
        self.driver.get(self.console.url + path)

    def by_id(self, element_id: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def text(self, element_id: str) -> str:
        return str(self.by_id(element_id).text)

    def type_into(self, element_id: str, value: str) -> None:
        field = self.by_id(element_id)
        field.clear()
        field.send_keys(value)

    def click_and_reload(self, element: Any) -> str:
        """Click what reloads the page; return the confirmation the new page shows."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions

        old = self.driver.find_element(By.TAG_NAME, "html")
        element.click()
        until(lambda: expected_conditions.staleness_of(old)(self.driver), 20, "the reload")
        text: str = until(lambda: self.text("flash"), 20, "the page's confirmation")
        return text

    def sign_in(self, password: str) -> None:
        self.open("/login")
        self.type_into("login-password", password)
        self.by_id("login-submit").click()

    def shot(self, name: str) -> None:
        screenshot(self.driver, f"console-{name}")

    # -- the gateway --------------------------------------------------------------------------

    def last_control(self) -> Any:
        """The last administrator's event (the scanner writes connection events too)."""
        return [e for e in self.gateway.control_events() if e.producer.stage == "admin"][-1]




def searched(stack: Stack, row_id: str, text: str) -> str:
    """Search again until the row shows `text` (the projector folds the log a moment after
    it was written); the row's text."""
    def found() -> str | None:
        stack.by_id("search-submit").click()
        time.sleep(0.5)
        shown = stack.text(row_id)
        return shown if text in shown else None
    row: str = until(found, 30, f"{row_id} showing {text!r}")
    return row


EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def send_detect(stack: Stack, subject: str, version: int) -> tuple[str, list[Any]]:
    """An EICAR message to the `console` rule, admitted under configuration `version` (sent
    again if ingest had not read the change yet: a message keeps the version it came under)."""
    for attempt in range(3):
        m = stack.gateway.send(mail(subject, EICAR, "console@example.net"),
                               recipients=("console@example.net",))
        events = stack.gateway.wait_terminal(m)
        received = next(e for e in events if e.type == "mail.received")
        if received.settings_version >= version or attempt == 2:
            assert received.settings_version >= version
            return m, events
        time.sleep(1)
    raise AssertionError("unreachable")


def apply_rule(stack: Stack) -> int:
    assert "applied" in stack.click_and_reload(stack.by_id("rule-apply"))
    event = stack.last_control()
    assert event.actor == "admin"
    return int(event.version)


def select(stack: Stack, message_id: str) -> None:
    box = stack.by_id(f"waiting-{message_id}").find_element("css selector", "input.select")
    if not box.is_selected():
        box.click()


def expected_refusal(field: str, value: str) -> str:
    with pytest.raises(InvalidCommand) as refusal:
        validate_settings({field: value})
    return str(refusal.value)
