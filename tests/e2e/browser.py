"""Headless Chromium from Debian, driven by Selenium through Debian's chromedriver (both
installed by scripts/system-packages). In CI a missing browser fails the test; elsewhere it
skips with a message. Screenshots go to tests/artifacts/ (gitignored)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.tools import require_tool

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def require_browser() -> tuple[str, str]:
    return (require_tool("chromium", "chromium-browser", package="chromium"),
            require_tool("chromedriver", package="chromium-driver"))


def chromium() -> Any:
    """A headless Chromium session; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, driver = require_browser()
    options = Options()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000", "--no-first-run",
                     "--disable-extensions", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--lang=en-US"):
        options.add_argument(argument)
    # The driver is named, so Selenium Manager (which would download one) never runs.
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def until(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "") -> Any:
    """Poll `predicate` (which may raise while the page settles) until it is truthy."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # stale elements while a page reloads
            last = exc
        else:
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}"
                         + (f" (last error: {last!r})" if last else ""))
