"""atheris fuzz targets: the code that reads what strangers send. Each target states what must
hold for any input; a violation (or any exception) is a crash that atheris saves.

    python -m tests.fuzz.run TARGET [libFuzzer flags, e.g. -max_total_time=600 CORPUS_DIR]

The bounded runs in CI are tests/fuzz/test_fuzz.py; a crash found becomes a case in
tests/corpus/.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from katagate.decider.subject_tag import tag_subject
from katagate.ingest.data_body import DataBody, Overflow
from katagate.ingest.handler import inspect
from katagate.ingest.settings import IngestSettings
from katagate.scanner.replies import FINAL_STATES, Garbage, parse_detects, parse_states

TAGS = ("[KATA detect]", "[KATA обнаружено]", "=?utf-8?q?x?= tag", "")
_SETTINGS = IngestSettings(relay_domains=["example.net"])


def subject_tagger(data: bytes) -> None:
    """Tagging changes the header block only: the body after the first empty line is byte for
    byte what it was, and nothing untagged changes at all."""
    if not data:
        return
    tag, raw = TAGS[data[0] % len(TAGS)], data[1:]
    result = tag_subject(raw, tag)
    if not result.tagged:
        assert result.data is raw, "an untagged message was changed"
        return
    assert len(result.data) > len(raw), "tagging added nothing"
    for blank in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(blank)
        if at >= 0:
            body = raw[at + len(blank):]
            assert result.data.endswith(body), "the body changed"
            break


def kata_replies(data: bytes) -> None:
    """Any reply body parses to values of the documented types or to Garbage, never raises."""
    states = parse_states(data)
    if not isinstance(states, Garbage):
        scans, skipped = states
        assert skipped >= 0
        for scan in scans:
            assert isinstance(scan.scan_id, str)
            assert scan.scan_id
            assert scan.state in FINAL_STATES or scan.state == "processing"
    detects = parse_detects(data)
    if not isinstance(detects, Garbage):
        assert all(isinstance(d.scan_id, str) and d.scan_id for d in detects.detects)
        assert detects.token is None or isinstance(detects.token, str)


_LOOP = asyncio.new_event_loop()  # one for every run: a loop per input would be most of its cost


def _read_body(wire: bytes) -> tuple[DataBody, bytes]:
    async def read() -> tuple[DataBody, bytes]:
        reader = asyncio.StreamReader(limit=_SETTINGS.max_line_length + 1)
        reader.feed_data(wire)
        reader.feed_eof()
        body = DataBody(max_bytes=_SETTINGS.max_message_bytes,
                        max_line=_SETTINGS.max_line_length + 1)
        await body.read(reader)
        return body, await reader.read()
    return _LOOP.run_until_complete(read())


def smtp_data(data: bytes) -> None:
    """The DATA reader ends at the first line of one dot and nowhere else, leaving what
    follows unread, and removes exactly one leading dot per line; of what it read, ingest
    accepts CRLF lines of at most 1,000 octets without NUL; a refusal is a 5xx reply naming the
    problem; the subject read is text."""
    wire = data + b"\r\n.\r\nQUIT\r\n"
    body, rest = _read_body(wire)
    end = 3 if wire.startswith(b".\r\n") else wire.index(b"\r\n.\r\n") + 5
    assert rest == wire[end:], (rest[:40], end)
    if body.overflow is not Overflow.NONE:
        return
    lines = re.split(rb"(?<=\r\n)", wire[:end - 3 if end > 3 else 0])
    content = body.content()
    assert content == b"".join(line[1:] if line[:1] == b"." else line for line in lines)
    inspected = inspect(content, _SETTINGS)
    if inspected.refusal is not None:
        assert str(inspected.refusal)[:1] == "5", inspected.refusal
        return
    assert b"\x00" not in content
    unpaired = content.replace(b"\r\n", b"")
    assert b"\r" not in unpaired
    assert b"\n" not in unpaired
    assert all(len(line) + 2 <= 1000 for line in content.split(b"\r\n"))
    assert inspected.subject is None or isinstance(inspected.subject, str)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "subject_tagger": subject_tagger,
    "kata_replies": kata_replies,
    "smtp_data": smtp_data,
}
