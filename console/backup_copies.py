"""A Backup copy's bytes, read back from `katagate.backup` where its row says it lies
(`eventlog.raw.RawReader`, checked against the row's sha256 when read whole), and its safe
view (`admin.mail_view`: decoded headers, the body as text, never HTML). One reader for the
console, one read at a time: a consumer is not shared between threads."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from katagate.admin.mail_view import MailView, view
from katagate.eventlog.raw import RawReader
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas.types import RawLocation

VIEW_BYTES = 1_048_576  # a copy's page shows its first MiB; the download has all of it


def chunks_for(location: RawLocation, limit: int | None) -> list[int]:
    """The offsets to read: all of them, or enough chunks to hold `limit` bytes and one more
    (so a longer copy shows as cut)."""
    if limit is None:
        return location.offsets
    return location.offsets[:limit // location.chunk_bytes + 1]


def view_document(mail: MailView) -> dict[str, Any]:
    return {"headers": [{"name": n, "value": v} for n, v in mail.headers], "text": mail.text,
            "attachments": [{"filename": a.filename, "content_type": a.content_type,
                             "size": a.size} for a in mail.attachments],
            "truncated": mail.truncated}


class BackupReader:
    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._reader: RawReader | None = None
        self._lock = threading.Lock()

    def read(self, row: Mapping[str, Any], limit: int | None = None) -> bytes:
        """The copy's bytes (its first `limit` and a little more, if given); RawUnavailable
        when retention removed them or they do not match their digest."""
        location = RawLocation.model_validate(row["location"])
        offsets = chunks_for(location, limit)
        whole = offsets == location.offsets
        with self._lock:
            if self._reader is None:
                self._reader = RawReader(self._kafka)
            return self._reader.read(location.topic, location.partition, offsets,
                                     str(row["message_id"]), row["sha256"] if whole else None)

    def view(self, row: Mapping[str, Any]) -> MailView:
        return view(self.read(row, VIEW_BYTES), VIEW_BYTES)

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
