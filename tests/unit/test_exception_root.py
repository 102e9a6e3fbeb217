"""One exception root: every error class katagate defines derives from `KatagateError`, so a
front end that shows `KatagateError` messages shows them all and lets only bugs through."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from katagate.schemas.errors import KatagateError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("access", "admin", "audit", "console", "decider", "demo_sink", "eventlog", "ingest",
            "kata_emulator", "katagate", "projector", "scanner", "schemas")
# Control flow inside one module, never raised to a caller: why each is not a KatagateError.
INTERNAL = {
    "console.limits.BodyTooLarge": "an HTTPException the web framework answers with 413",
    "console.problems.ProblemError": "an HTTP problem document the API's handler renders",
    "console.web.SignIn": "a redirect to the sign-in page",
    "projector.http.BadRequest": "answered with 400 by the projector's own HTTP parser",
    "projector.server.HeadError": "a malformed request head; the connection is closed",
    "kata_emulator.api.BodyTooLarge": "answered with 413 by the emulator",
}


def error_classes() -> list[type[BaseException]]:
    found = []
    for package in PACKAGES:
        for info in pkgutil.walk_packages([str(ROOT / package)], f"{package}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            for _name, value in inspect.getmembers(module, inspect.isclass):
                if (issubclass(value, BaseException) and value.__module__ == info.name
                        and not value.__name__.startswith("_")):
                    found.append(value)
    return found


def test_every_error_katagate_defines_derives_from_the_one_root():
    classes = error_classes()
    assert len(classes) > 20  # the walk found the packages
    stray = [f"{c.__module__}.{c.__qualname__}" for c in classes
             if not issubclass(c, KatagateError)
             and f"{c.__module__}.{c.__qualname__}" not in INTERNAL]
    assert stray == []


def test_the_internal_exceptions_listed_still_exist():
    names = {f"{c.__module__}.{c.__qualname__}" for c in error_classes()}
    assert set(INTERNAL) <= names
