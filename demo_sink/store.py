"""The sink's folder: one `<timestamp>-<n>.eml` (the DATA bytes) + `.json` sidecar per message.

Both files are written to a temporary name in the same folder, flushed to disk and renamed, the
`.eml` first: a reader that lists `*.json` never sees a half-written file or a sidecar without
its message. One writing process per folder (the counter `n` is per process).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class StoredMessage:
    name: str  # "<timestamp>-<n>", the stem of both files
    path: Path  # the .eml file
    data: bytes  # exactly the DATA bytes received (dot-unstuffed, CRLF line endings)
    envelope_from: str  # "" for the null sender <>
    recipients: list[str]
    peer: str  # "ip:port" of the client
    helo: str | None
    received_at: datetime  # UTC
    sha256: str
    mail_options: list[str]


class MessageStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def save(self, *, data: bytes, envelope_from: str, recipients: list[str], peer: str,
             helo: str | None, received_at: datetime, mail_options: list[str]) -> str:
        """Store one message; return its name."""
        with self._lock:
            while True:
                name = f"{received_at:%Y%m%dT%H%M%S.%fZ}-{next(self._counter):06d}"
                if not (self.directory / f"{name}.eml").exists():
                    break
        sidecar = {
            "envelope_from": envelope_from,
            "recipients": recipients,
            "peer": peer,
            "helo": helo,
            "received_at": received_at.isoformat(),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "mail_options": mail_options,
        }
        self._write(f"{name}.eml", data)
        self._write(f"{name}.json", json.dumps(sidecar, indent=2).encode("utf-8") + b"\n")
        return name

    def _write(self, filename: str, content: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.directory / filename)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_messages(directory: Path | str) -> list[StoredMessage]:
    """Every complete message in `directory`, oldest first."""
    folder = Path(directory)
    messages = []
    for sidecar_path in sorted(folder.glob("*.json")):
        meta = json.loads(sidecar_path.read_text("utf-8"))
        eml = sidecar_path.with_suffix(".eml")
        messages.append(StoredMessage(
            name=sidecar_path.stem,
            path=eml,
            data=eml.read_bytes(),
            envelope_from=meta["envelope_from"],
            recipients=list(meta["recipients"]),
            peer=meta["peer"],
            helo=meta.get("helo"),
            received_at=datetime.fromisoformat(meta["received_at"]),
            sha256=meta["sha256"],
            mail_options=list(meta.get("mail_options", [])),
        ))
    return messages
