"""Senders that behave like an MTA and record every reply they got and when: the load of the
fault suite's rig (tests/faults/harness.py) and of the restart benchmark (bench/restarts/)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import smtplib
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Attempt:
    began: float  # time.monotonic() when DATA was sent
    ended: float  # when its reply (or the failure) came
    code: int | None  # None: the connection failed


@dataclass
class Senders:
    """Threads that each send `count` messages like an MTA: a message without a 250 (a 4xx, a
    dropped connection) is sent again; every attempt's reply is kept."""

    port: int
    count: int
    threads: int = 4
    pause_s: float = 0.05  # between messages, per thread
    body_bytes: int = 0  # padding, to fill a disk sooner
    # Further ingest instances: like an MTA with several MX hosts, a thread whose connection
    # fails goes on with the next one.
    other_ports: tuple[int, ...] = ()
    # Message-ID <PREFIX-n@example.org>: a prefix per run keeps runs apart in one sink.
    id_prefix: str = "fault"
    accepted: list[str] = field(default_factory=list)
    # Message-ID -> time.time() of its 250: for how long it then took to the next hop.
    accepted_at: dict[str, float] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    # Message-ID -> attempts whose connection broke after the DATA command with no reply: the
    # gateway may have taken each (SMTP's duplicate window), and a retry then makes a copy.
    unanswered: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        per = self.count // self.threads
        self._workers = [threading.Thread(target=self._send, args=(i * per, per, i), daemon=True)
                         for i in range(self.threads)]

    def start(self) -> Senders:
        for worker in self._workers:
            worker.start()
        return self

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.stop.set()

    def _record(self, began: float, code: int | None) -> None:
        with self._lock:
            self.attempts.append(Attempt(began, time.monotonic(), code))

    def _send(self, first: int, count: int, index: int = 0) -> None:
        ports = (self.port, *self.other_ports)
        turn = index
        client: smtplib.SMTP | None = None
        for n in range(first, first + count):
            if self.stop.is_set():
                break
            message_id = f"<{self.id_prefix}-{n}@example.org>"
            data = (f"Subject: fault {n}\r\nMessage-ID: {message_id}\r\n\r\n"
                    f"body {n}\r\n").encode() + padding(self.body_bytes)
            while not self.stop.is_set():
                began = time.monotonic()
                in_data = False
                try:
                    if client is None:
                        client = smtplib.SMTP("127.0.0.1", ports[turn % len(ports)], timeout=30)
                        client.ehlo("fault.example.org")
                    client.mail("alice@example.org")
                    code, reply = client.rcpt("bob@example.net")
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, reply)
                    began = time.monotonic()
                    in_data = True
                    code, reply = client.data(data)
                    in_data = False
                    self._record(began, code)
                    if code == 250:
                        match = re.search(rb"queued as ([A-Za-z0-9]+)", reply)
                        assert match, reply
                        with self._lock:
                            self.accepted.append(match.group(1).decode())
                            self.accepted_at[message_id] = time.time()
                        break
                    client.rset()
                except (OSError, smtplib.SMTPException) as exc:
                    self._record(began, None)
                    if in_data and not isinstance(exc, smtplib.SMTPResponseException):
                        with self._lock:
                            self.unanswered[message_id] = self.unanswered.get(message_id, 0) + 1
                    if client is not None:
                        with contextlib.suppress(OSError):
                            client.close()
                    client = None
                    turn += 1
                    time.sleep(0.2)
            time.sleep(self.pause_s)
        if client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()


def padding(size: int) -> bytes:
    """Random base64 lines: the broker stores them at their size (the producer compresses)."""
    lines = size // 78
    return base64.encodebytes(os.urandom(lines * 57)).replace(b"\n", b"\r\n")
