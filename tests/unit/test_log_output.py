"""Where a process logs (katagate/log_output.py): syslog over a real UDP socket, facility mail;
a bad logging setting stops a stage at its start, naming the setting and what it allows; `up`
passes katagate.toml's [logging] to its children."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading

import pytest

from katagate.eventlog import mail_log
from katagate.log_output import JsonFormatter, LogSettings, handlers, text_format
from katagate.process import pass_logging_on
from tests.integration.kata_harness import ROOT
from tests.unit.test_mail_log import MID, received


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def syslog_lines(receiver: socket.socket, log_format: str) -> list[bytes]:
    """Given the mail log and a warning sent to syslog at `receiver` in `log_format`."""
    port = receiver.getsockname()[1]
    settings = LogSettings(syslog=f"udp:127.0.0.1:{port}", log_format=log_format)
    _stderr, syslog = handlers(settings, "ingest")
    logger = logging.getLogger(mail_log.LOGGER)
    logger.addHandler(syslog)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        mail_log.write([received()])
        logger.warning("a warning\nwith a second line")
    finally:
        logger.removeHandler(syslog)
        logger.setLevel(level)
        syslog.close()
    return [receiver.recv(65536), receiver.recv(65536)]


def test_syslog_gets_each_mail_log_line_as_one_datagram_of_facility_mail(receiver):
    line, warning = syslog_lines(receiver, "text")
    # mail (2) * 8 + info (6) = 22; mail (2) * 8 + warning (4) = 20
    tag = f"<22>katagate/ingest[{os.getpid()}]: ".encode()
    assert line.rstrip(b"\0") == tag + mail_log.line(received()).text().encode()
    assert warning.rstrip(b"\0") == (f"<20>katagate/ingest[{os.getpid()}]: WARNING "
                                     "katagate.maillog a warning\\nwith a second line").encode()


def test_syslog_in_json_carries_the_fields(receiver):
    import json

    line, _ = syslog_lines(receiver, "json")
    body = json.loads(line.rstrip(b"\0").split(b": ", 1)[1])
    assert (body["message_id"], body["event"], body["from"]) == (MID, "mail.received",
                                                                 "a@x.example")


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("KATAGATE_SYSLOG", "tcp:127.0.0.1:514", "/dev/log (a socket path) or udp:HOST:PORT"),
    ("KATAGATE_SYSLOG", "udp:127.0.0.1:70000", "udp:HOST:PORT"),
    ("KATAGATE_LOG_FORMAT", "xml", "'text' or 'json'"),
])
def test_a_bad_logging_setting_stops_a_stage_naming_it(variable, value, said):
    # Given a stage started with a logging setting out of its range
    env = {**os.environ, variable: value}
    result = subprocess.run([sys.executable, "-m", "katagate", "ingest", "run"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    # Then it exits 2 at once, naming the variable and what it allows
    assert result.returncode == 2, result.stderr
    assert f"katagate ingest: setting {variable.removeprefix('KATAGATE_').lower()} " \
           f"({variable})" in result.stderr
    assert said in result.stderr


def test_a_syslog_socket_that_is_not_there_stops_a_stage_naming_the_setting(tmp_path):
    env = {**os.environ, "KATAGATE_SYSLOG": str(tmp_path / "no-such-socket")}
    result = subprocess.run([sys.executable, "-m", "katagate", "ingest", "run"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "katagate ingest: setting syslog (KATAGATE_SYSLOG): cannot log to" in result.stderr


def unset(monkeypatch, *names: str) -> None:
    """Unset for this test, and unset again after it whatever the test set."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_up_passes_the_logging_section_on_and_the_environment_wins(monkeypatch):
    unset(monkeypatch, "KATAGATE_LOG_FORMAT")
    monkeypatch.setenv("KATAGATE_SYSLOG", "udp:127.0.0.1:514")
    pass_logging_on({"format": "json", "syslog": "/dev/log"})
    assert os.environ["KATAGATE_LOG_FORMAT"] == "json"
    assert os.environ["KATAGATE_SYSLOG"] == "udp:127.0.0.1:514"


@pytest.mark.parametrize(("section", "said"), [
    ({"fromat": "json"}, "unknown key 'fromat' in [logging]; allowed: format, level, syslog"),
    ({"format": "xml"}, "setting log_format (KATAGATE_LOG_FORMAT)"),
])
def test_up_refuses_a_bad_logging_section(monkeypatch, capsys, section, said):
    unset(monkeypatch, "KATAGATE_LOG_FORMAT", "KATAGATE_SYSLOG")
    with pytest.raises(SystemExit) as stopped:
        pass_logging_on(section)
    assert stopped.value.code == 2
    assert said in capsys.readouterr().err


def test_syslog_on_a_local_socket_gets_the_line(tmp_path):
    # Given a syslog daemon's datagram socket, as /dev/log is
    path = tmp_path / "log"
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.bind(str(path))
    daemon.settimeout(5)
    (_, syslog) = handlers(LogSettings(syslog=str(path)), "decider")
    logger = logging.getLogger(mail_log.LOGGER)
    logger.addHandler(syslog)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        mail_log.write([received()])
        datagram = daemon.recv(65536)
    finally:
        logger.removeHandler(syslog)
        logger.setLevel(level)
        syslog.close()
        daemon.close()
    assert datagram.rstrip(b"\0").endswith(mail_log.line(received()).text().encode())


def test_a_syslog_daemon_that_stops_reading_costs_lines_never_the_stage(tmp_path, capsys):
    # Given a syslog daemon's datagram socket that is never read (a stalled daemon)
    path = tmp_path / "log"
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon.bind(str(path))
    (_, syslog) = handlers(LogSettings(syslog=str(path)), "decider")
    logger = logging.getLogger(mail_log.LOGGER)
    logger.addHandler(syslog)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the lines go to syslog only here
    done = threading.Event()

    def committed_lines() -> None:
        for _ in range(5000):  # far more than the socket's queue holds
            mail_log.write([received()])
        done.set()

    writer = threading.Thread(target=committed_lines, daemon=True)
    try:
        # When a stage writes its mail log lines after each commit
        writer.start()
        # Then it goes on: the lines the socket cannot take are dropped and counted
        assert done.wait(20), "the stage is blocked on its syslog socket"
        assert 0 < syslog.dropped < 5000  # type: ignore[attr-defined]
        assert "katagate: the syslog socket is full: 1 line(s) dropped so far" in (
            capsys.readouterr().err)
        assert daemon.recv(65536).rstrip(b"\0").endswith(
            mail_log.line(received()).text().encode())
    finally:
        logger.removeHandler(syslog)
        logger.setLevel(level)
        logger.propagate = propagate
        daemon.close()
        writer.join(5)
        syslog.close()


def test_an_smtp_worker_names_itself_in_text_and_json():
    import json

    record = logging.LogRecord("katagate.ingest", logging.WARNING, __file__, 1, "held %d", (3,),
                               None)
    assert logging.Formatter(text_format(1)).format(record).endswith(
        " WARNING katagate.ingest [worker 1] held 3")
    assert logging.Formatter(text_format()).format(record).endswith(
        " WARNING katagate.ingest held 3")
    body = json.loads(JsonFormatter("ingest", 0).format(record))
    assert (body["stage"], body["worker"], body["message"]) == ("ingest", 0, "held 3")
    assert "worker" not in json.loads(JsonFormatter("ingest").format(record))
    stderr, = handlers(LogSettings(log_format="json"), "ingest", 2)
    assert json.loads(stderr.format(record))["worker"] == 2
