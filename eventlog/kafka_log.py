"""librdkafka's own log lines (connection refused, authentication failed, a broker's transport
error, ...) through the Python logger `katagate.kafka`, so they reach the stage's log in its
format (text or JSON), its syslog and its level, instead of librdkafka's raw stderr.

confluent-kafka calls the `logger` of a client's configuration with a logging level it maps
from librdkafka's syslog level (0-2 CRITICAL, 3 ERROR, 4 WARNING, 5-6 INFO, 7 DEBUG), from the
thread that polls the client. librdkafka repeats a line for as long as its cause lasts (a broker
down: every reconnect attempt), so a line said once is then held back for `REPEAT_WINDOW_S`,
and the next one says how many were held back. katagate sets no `debug` contexts: the lines
are librdkafka's errors, warnings and notices, which carry no credentials.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

LOGGER = "katagate.kafka"
REPEAT_WINDOW_S = 30.0
KEPT_TEXTS = 1000  # distinct lines remembered; past that, those whose window ended are forgotten

# What varies between repeats of one line: the client's instance name (rdkafka#producer-7) and
# the timings in parentheses ("(after 0ms in state CONNECT, 3 identical error(s) suppressed)").
_INSTANCE = re.compile(r"rdkafka#[a-z]+-\d+")
_TIMINGS = re.compile(r"\s*\((?:[^()]|\(s\))*\d(?:[^()]|\(s\))*\)")


def same_text(text: str) -> str:
    """The part of a line that stays the same while its cause lasts."""
    return _TIMINGS.sub("", _INSTANCE.sub("rdkafka", text))


@dataclass
class _Said:
    at: float
    held: int = 0


class RepeatFilter:
    """Says whether a line is logged now: the first of its text in a window is, with the
    number of its repeats held back since the previous one; the rest of the window is not."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._said: dict[tuple[int, str], _Said] = {}
        self._lock = threading.Lock()  # clients are polled from several threads

    def admit(self, level: int, text: str) -> int | None:
        """None: hold this line back; else the number of repeats held back before it."""
        key = (level, same_text(text))
        with self._lock:
            now = self._clock()
            said = self._said.get(key)
            if said is not None and now - said.at < self.window_s:
                said.held += 1
                return None
            if len(self._said) >= KEPT_TEXTS:
                self._said = {k: s for k, s in self._said.items() if now - s.at < self.window_s}
            self._said[key] = _Said(now)
            return said.held if said is not None else 0


class KafkaLogRelay:
    """The object a client's `logger` property takes: confluent-kafka calls its `log`."""

    def __init__(self, repeats: RepeatFilter | None = None) -> None:
        self._logger = logging.getLogger(LOGGER)
        self._repeats = repeats or RepeatFilter()

    def log(self, level: int, msg: str, *args: object) -> None:
        if not self._logger.isEnabledFor(level):
            return
        text = msg % args if args else msg
        held = self._repeats.admit(level, text)
        if held is None:
            return
        if held:
            text += f" ({held} identical line(s) held back since it was last logged)"
        self._logger.log(level, "%s", text)


RELAY = KafkaLogRelay()  # one per process: a line repeated by several clients is said once
