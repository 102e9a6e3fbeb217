"""The SMTP bad-input corpus (tests/corpus/smtp, format in its README) against ingest on the
real broker: each case gets the replies it names, no more accepted messages than it allows,
within its time, and leaves a gateway that still answers."""

from __future__ import annotations

import codecs
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_ingest_harness import Ingest, received

pytestmark = pytest.mark.kafka

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "smtp"
_REPEAT = re.compile(rb"<<REPEAT (\d+)>>(.*?)<<END>>", re.DOTALL)


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    expect: list[str]
    accepted: int
    within_s: float
    send: bytes


def load(path: Path) -> Case:
    head, _, body = path.read_bytes().partition(b"\n---\n")
    fields = dict(line[2:].split(": ", 1) for line in head.decode().splitlines()
                  if line.startswith("# "))
    joined = body.replace(b"\n", b"")

    def repeat(match: re.Match[bytes]) -> bytes:
        return b"".join(match.group(2).replace(b"{i}", str(i).encode())
                        for i in range(int(match.group(1))))

    send = codecs.escape_decode(_REPEAT.sub(repeat, joined))[0]
    return Case(path.stem, fields["what"], [c.strip() for c in fields["expect"].split(",")],
                int(fields.get("accepted", "0")), float(fields.get("within", "20")), send)


CASES = [load(p) for p in sorted(CORPUS.glob("*.case"))]


def converse(address: tuple[str, int], data: bytes, within_s: float) -> list[str]:
    """Send `data` in one write; every reply line until the server closes or goes quiet."""
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + within_s
    with socket.create_connection(address, timeout=within_s) as sock:
        sock.sendall(data)
        sock.settimeout(2.0)
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            buffer += chunk
        else:
            pytest.fail(f"still talking after {within_s} s")
    for raw in buffer.split(b"\r\n"):
        if raw[3:4] == b" ":  # the last line of each reply
            lines.append(raw.decode("ascii", "replace"))
    return lines


def in_order(expected: list[str], replies: list[str]) -> bool:
    found = iter(replies)
    return all(any(reply.startswith(code) for reply in found) for code in expected)


@pytest.fixture(scope="module")
def ingest(make_module_kafka) -> Iterator[Ingest]:
    with Ingest(make_module_kafka) as running:
        yield running


@pytest.fixture(scope="module")
def make_module_kafka(kafka_bootstrap):
    from tests.conftest import ensure_namespace
    return ensure_namespace(kafka_bootstrap)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_corpus_case_gets_its_replies_and_nothing_more_is_accepted(ingest, case):
    before = len(received(ingest.kafka))
    began = time.monotonic()
    replies = converse(ingest.address, case.send, case.within_s)
    assert time.monotonic() - began < case.within_s
    assert in_order(case.expect, replies), f"{case.what}: got {replies[:12]}"
    queued = [r for r in replies if r.startswith("250 2.0.0 Ok: queued as")]
    assert len(queued) == case.accepted, f"{case.what}: {queued}"
    assert len(received(ingest.kafka)) - before == case.accepted
    # The gateway still answers a newcomer.
    with socket.create_connection(ingest.address, timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220 ")
