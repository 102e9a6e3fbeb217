"""What every long-running `katagate … run` process starts with."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

Settings = TypeVar("Settings", bound=BaseSettings)


def stop_on_signals() -> threading.Event:
    """Log to stderr, and return an event SIGTERM or SIGINT sets (a clean stop, not a kill)."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def settings_or_exit(model: type[Settings], command: str, **overrides: Any) -> Settings:
    """`model` from the environment and `overrides`; a bad value exits 2 naming the setting,
    its environment variable and the allowed range (the model's Field bounds)."""
    try:
        return model(**overrides)
    except ValidationError as exc:
        prefix = str(model.model_config.get("env_prefix", ""))
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            print(f"katagate {command}: setting {name} ({prefix}{name.upper()}): "
                  f"{error['msg']}{_bounds(model, name)}", file=sys.stderr)
        raise SystemExit(2) from None


def _bounds(model: type[BaseSettings], name: str) -> str:
    """The field's range as its Field bounds say, e.g. '; allowed: >= 1, <= 1024'."""
    field = model.model_fields.get(name)
    if field is None:
        return ""
    found = [f"{sign} {getattr(m, attr)}" for m in field.metadata
             for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
             if getattr(m, attr, None) is not None]
    return f"; allowed: {', '.join(found)}" if found else ""
