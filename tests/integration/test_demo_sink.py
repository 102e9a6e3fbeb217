"""The demo next-hop MTA: what it stores, its sidecars, its fault switches, its command line."""

from __future__ import annotations

import argparse
import json
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from katagate import sink_cmd
from katagate.decider.smtp_out import deliver
from katagate.demo_sink.server import Faults, SinkServer
from katagate.demo_sink.store import read_messages

MESSAGE = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: stored\r\n\r\n"
           b"line\r\n.dot line\r\n\r\nlast\r\n")


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SinkServer]:
    with SinkServer(tmp_path / "mail") as server:
        yield server


def _send(port: int, sender: str = "a@example.org", recipients: list[str] | None = None,
          data: bytes = MESSAGE) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(sender, recipients or ["b@example.net"], data)


def test_given_a_message_then_its_exact_bytes_and_a_sidecar_are_stored(sink):
    before = datetime.now(UTC)
    _send(sink.port, recipients=["b@example.net", "c@example.net"])
    [stored] = read_messages(sink.directory)
    assert stored.data == MESSAGE
    assert stored.path.read_bytes() == MESSAGE
    assert stored.envelope_from == "a@example.org"
    assert stored.recipients == ["b@example.net", "c@example.net"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", stored.peer)
    assert before - timedelta(seconds=1) <= stored.received_at <= datetime.now(UTC)
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-\d{6}", stored.name)
    sidecar = json.loads(stored.path.with_suffix(".json").read_text())
    assert sidecar["size"] == len(MESSAGE)
    assert sidecar["sha256"] == stored.sha256
    assert sorted(p.name for p in sink.directory.iterdir()) == [
        f"{stored.name}.eml", f"{stored.name}.json"]  # no temporary file left behind


def test_given_several_messages_then_they_are_read_back_in_order(sink):
    for n in range(5):
        _send(sink.port, data=MESSAGE + b"number %d\r\n" % n)
    stored = read_messages(sink.directory)
    assert [m.data[-10:] for m in stored] == [b"number %d\r\n" % n for n in range(5)]


def test_given_the_null_sender_then_it_is_stored_as_empty(sink):
    _send(sink.port, sender="")
    assert read_messages(sink.directory)[0].envelope_from == ""


def test_given_a_delivery_from_the_gateway_then_the_sink_has_the_same_bytes(sink):
    outcome = deliver(host="127.0.0.1", port=sink.port, envelope_from="", recipients=["b@x.org"],
                      data=MESSAGE, helo="gw.example.org", timeout_s=5)
    assert outcome.kind == "delivered"
    assert outcome.reply.startswith("250 2.0.0 OK: stored as ")
    [stored] = read_messages(sink.directory)
    assert (stored.data, stored.envelope_from, stored.helo) == (MESSAGE, "", "gw.example.org")


def test_given_fail_rate_1_then_every_message_gets_451_and_nothing_is_stored(tmp_path):
    with SinkServer(tmp_path / "mail", faults=Faults(fail_rate=1.0)) as server:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _send(server.port)
        assert refused.value.smtp_code == 451
        assert read_messages(server.directory) == []


def test_given_a_seeded_fail_rate_then_the_share_is_about_right(tmp_path):
    with SinkServer(tmp_path / "mail", faults=Faults(fail_rate=0.5, seed=7)) as server:
        failures = 0
        for _ in range(40):
            try:
                _send(server.port)
            except smtplib.SMTPDataError:
                failures += 1
        assert 8 <= failures <= 32
        assert len(read_messages(server.directory)) == 40 - failures


def test_given_a_rejected_recipient_pattern_then_550_for_those_only(tmp_path):
    faults = Faults(reject_rcpt=("*@blocked.example", "nobody@*"))
    with SinkServer(tmp_path / "mail", faults=faults) as server:
        refused = _send(server.port, recipients=["b@example.net", "x@BLOCKED.example",
                                                 "nobody@example.net"])
        assert {r: code for r, (code, _) in refused.items()} == {
            "x@BLOCKED.example": 550, "nobody@example.net": 550}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            _send(server.port, recipients=["y@blocked.example"])
        [stored] = read_messages(server.directory)
        assert stored.recipients == ["b@example.net"]


def test_given_a_half_written_file_then_readers_do_not_see_it(sink):
    _send(sink.port)
    (sink.directory / ".tmp-abc.part").write_bytes(b"half")
    (sink.directory / "20990101T000000.000000Z-000001.eml").write_bytes(b"no sidecar yet")
    assert len(read_messages(sink.directory)) == 1


def test_the_fault_rate_is_checked():
    with pytest.raises(ValueError, match=r"0\.\.1"):
        Faults(fail_rate=1.5)


def test_python_m_demo_sink_prints_its_address_and_stores_mail(tmp_path):
    folder = tmp_path / "cli-mail"
    process = subprocess.Popen(
        [sys.executable, "-m", "katagate.demo_sink", "--host", "127.0.0.1", "--port", "0",
         "--dir", str(folder), "--reject-rcpt", "bad@*"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().strip()
        match = re.fullmatch(r"sink=127\.0\.0\.1:(\d+) dir=(.+)", banner)
        assert match, banner
        assert Path(match.group(2)) == folder
        refused = _send(int(match.group(1)), recipients=["ok@example.net", "bad@example.net"])
        assert list(refused) == ["bad@example.net"]
        assert [m.recipients for m in read_messages(folder)] == [["ok@example.net"]]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_katagate_sink_run_is_registered():
    parser = argparse.ArgumentParser(prog="katagate")
    sink_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sink", "run", "--port", "2526", "--dir", "mail-dir",
                              "--fail-rate", "0.25", "--reject-rcpt", "a@*"])
    assert (args.port, args.dir, args.fail_rate, args.reject_rcpt) == (
        2526, Path("mail-dir"), 0.25, ["a@*"])
    assert callable(args.run)
    with pytest.raises(SystemExit):
        parser.parse_args(["sink", "run", "--dir", "mail-dir", "--fail-rate", "2"])


def _reply(stream: Any) -> bytes:
    """One SMTP reply, its continuation lines included."""
    lines = b""
    while True:
        line = stream.readline()
        lines += line
        if len(line) < 4 or line[3:4] != b"-":
            return lines


def test_given_sigterm_while_a_message_is_in_data_then_it_is_stored_once_and_answered(
        tmp_path):
    # Given the sink as `katagate up` runs it, a session inside DATA (half its body sent) and
    # another one idle after EHLO
    folder = tmp_path / "mail"
    process = subprocess.Popen(
        [sys.executable, "-m", "katagate.demo_sink", "--port", "0", "--dir", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[0].rsplit(":", 1)[1])
        sending = socket.create_connection(("127.0.0.1", port), timeout=10)
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        stream, idle_stream = sending.makefile("rb"), idle.makefile("rb")
        for client, reader in ((sending, stream), (idle, idle_stream)):
            assert _reply(reader).startswith(b"220")
            client.sendall(b"EHLO gw.example.net\r\n")
            assert _reply(reader).startswith(b"250")
        for command, code in ((b"MAIL FROM:<a@example.org>", b"250"),
                              (b"RCPT TO:<b@example.net>", b"250"), (b"DATA", b"354")):
            sending.sendall(command + b"\r\n")
            assert _reply(stream).startswith(code), command
        stuffed = MESSAGE.replace(b"\r\n.", b"\r\n..")  # as on the wire
        head, tail = stuffed[:30], stuffed[30:]
        sending.sendall(head)
        time.sleep(0.3)
        # When SIGTERM arrives, and the rest of the body after it
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # Then it listens no more, and the idle session is closed
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert idle_stream.readline() == b""
        sending.sendall(tail + b".\r\n")
        # And the message in DATA is answered 250 and stored once; then the sink exits 0
        assert _reply(stream).startswith(b"250 2.0.0 OK: stored as ")
        assert stream.readline() == b""  # closed after its answer
        assert process.wait(timeout=15) == 0
        assert [m.data for m in read_messages(folder)] == [MESSAGE]
        sending.close()
        idle.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
