"""Paths no other test reached: a scan whose raw message cannot be read back, the sensor
identity's repr, the default state folders, the broker log's tail in a start error, the
`katagate cluster` commands on a folder without a running cluster, and an SMTP session whose
handler hits a bug of ours."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from katagate.cli import main
from katagate.eventlog.broker import LocalBroker, free_port
from katagate.eventlog.broker.cluster import Layout, LocalCluster, NodePorts, default_cluster_dir
from katagate.eventlog.broker.launcher import default_data_dir
from katagate.eventlog.errors import BrokerError
from katagate.eventlog.raw import RawUnavailable
from katagate.ingest.handler import IngestHandler
from katagate.ingest.listener import serve
from katagate.scanner.book import content_unavailable, submission_events
from katagate.scanner.identity import load_or_create
from katagate.scanner.kata_api import Refused
from katagate.scanner.settings import ScannerSettings
from katagate.schemas import ControlState, ScanFailed, decode_event, encode_event
from katagate.schemas.ids import SCANS, step_id
from tests.integration.test_ingest_harness import RawClient, ingest_settings
from tests.unit.test_scanner_book import CTX, T0, admitted, book_with, received

# --- scanner/book.py: content_unavailable ---------------------------------------------------


def test_a_scan_whose_raw_message_cannot_be_read_fails_finally_with_content_unavailable():
    # Given an admitted message due for submission
    book = book_with(received("m0000001"), admitted("m0000001"))
    (scan,) = book.due_for_submit(T0)
    # When its raw chunks cannot be read back
    detail = str(RawUnavailable("raw chunk m0000001 at mail.raw[0]@5: gone (retention)"))
    (event,) = content_unavailable(scan, detail, CTX)
    # Then one final ScanFailed, content_unavailable, first attempt, with the reason
    assert isinstance(event, ScanFailed)
    assert (event.reason, event.final, event.attempt) == ("content_unavailable", True, 1)
    assert (event.message_id, event.scan_id) == ("m0000001", "m0000001")
    assert event.correlation_id == UUID(int=1)  # the MessageReceived's event id
    assert event.detail == detail
    assert (event.occurred_at, event.producer) == (CTX.now, CTX.producer)
    # With an id made from the message and the step: a retry after a crash makes the same one
    assert event.event_id == step_id(SCANS, "m0000001", "failed-1")
    assert content_unavailable(scan, detail, CTX) == [event]
    assert decode_event(encode_event(event)) == event
    # And the scan leaves the book: nothing will submit it again
    book.evolve(event, 0)
    assert len(book) == 0
    assert book.due_for_submit(T0) == []


def test_content_unavailable_after_a_retried_submission_counts_the_attempt_and_cuts_detail():
    book = book_with(received("m0000002"), admitted("m0000002"))
    (scan,) = book.due_for_submit(T0)
    (busy,) = submission_events(scan, Refused("busy", "429 Too Many Requests", final=False), CTX)
    book.evolve(busy, 0)
    (scan,) = book.due_for_submit(T0 + timedelta(seconds=600))  # after its backoff
    (event,) = content_unavailable(scan, "x" * 5000, CTX)
    assert event.attempt == 2
    assert event.event_id == step_id(SCANS, "m0000002", "failed-2")
    assert event.detail == "x" * 1000


# --- scanner/identity.py: the repr never shows key material ---------------------------------


def test_the_sensor_identity_repr_shows_its_id_and_fingerprint_only(tmp_path, caplog):
    identity = load_or_create(tmp_path / "sensor")
    shown = repr(identity)
    assert shown == (f"SensorIdentity(sensor_id={identity.sensor_id!r}, "
                     f"fingerprint={identity.fingerprint!r})")
    key = identity.key_path.read_text()
    for secret in (str(identity.key_path), key, key.splitlines()[1], "PRIVATE",
                   identity.certificate_pem.splitlines()[1]):
        assert secret not in shown
    # As it reaches a log line, or a container's repr
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("identity %r in %s", identity, [identity])
    assert "PRIVATE" not in caplog.text
    assert str(tmp_path) not in caplog.text
    assert caplog.text.count(identity.fingerprint) == 2


# --- default state folders --------------------------------------------------------------------


def test_the_scanner_state_folder_defaults_to_xdg_state_home_then_home(tmp_path, monkeypatch):
    monkeypatch.delenv("KATAGATE_SCANNER_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    settings = ScannerSettings()
    assert settings.state_dir == tmp_path / "xdg" / "katagate"
    assert settings.sensor_dir == tmp_path / "xdg" / "katagate" / "sensor"
    monkeypatch.setenv("XDG_STATE_HOME", "")  # set but empty: as if unset
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ScannerSettings().state_dir == tmp_path / "home" / ".local" / "state" / "katagate"
    monkeypatch.setenv("KATAGATE_SCANNER_STATE_DIR", str(tmp_path / "explicit"))
    assert ScannerSettings().state_dir == tmp_path / "explicit"


def test_the_broker_and_cluster_folders_default_next_to_each_other(tmp_path, monkeypatch):
    monkeypatch.delenv("KATAGATE_BROKER_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    state = tmp_path / "home" / ".local" / "state" / "katagate"
    assert default_data_dir() == state / "broker"
    assert default_cluster_dir() == state / "cluster"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "katagate" / "broker"
    assert default_cluster_dir() == tmp_path / "xdg" / "katagate" / "cluster"
    # KATAGATE_BROKER_DIR names the broker's folder; the cluster's is its sibling
    monkeypatch.setenv("KATAGATE_BROKER_DIR", str(tmp_path / "mine" / "b"))
    assert default_data_dir() == tmp_path / "mine" / "b"
    assert default_cluster_dir() == tmp_path / "mine" / "cluster"
    assert LocalCluster().data_dir == (tmp_path / "mine" / "cluster").resolve()
    assert LocalBroker().data_dir == (tmp_path / "mine" / "b").resolve()


# --- launcher.py: the log's tail in the error of a broker that does not come up -------------


def write_logs(folder: Path) -> None:
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "broker.out").write_text(
        "".join(f"out line {i}\n" for i in range(1, 51)))
    (folder / "logs" / "server.log").write_text("server line 1\nserver line 2\n")


def test_a_broker_that_exits_is_reported_with_the_last_lines_of_its_logs(tmp_path):
    broker = LocalBroker(tmp_path / "b")
    write_logs(broker.data_dir)
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(timeout=30)
    with pytest.raises(BrokerError) as failed:
        broker.wait_ready(process, free_port(), timeout=30)
    message = str(failed.value)
    head, _, tail = message.partition("\n")
    assert head == "the broker exited with code 3; its log:"
    # The last 40 lines of broker.out, then server.log's
    assert tail == ("".join(f"out line {i}\n" for i in range(11, 51))
                    + "server line 1\nserver line 2\n")


def test_a_broker_that_does_not_answer_in_time_is_reported_with_its_log(tmp_path):
    broker = LocalBroker(tmp_path / "b")
    write_logs(broker.data_dir)
    (broker.data_dir / "logs" / "server.log").unlink()  # only what exists is shown
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        began = time.monotonic()
        with pytest.raises(BrokerError) as failed:
            broker.wait_ready(sleeper, free_port(), timeout=1)
        assert time.monotonic() - began < 15
        assert str(failed.value) == ("the broker did not answer within 1 s; its log:\n"
                                     + "".join(f"out line {i}\n" for i in range(11, 51)))
    finally:
        sleeper.kill()
        sleeper.wait()


# --- katagate cluster ... on a folder whose cluster does not run ----------------------------


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    def run_cli(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run_cli


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def laid_out(folder: Path, secure: bool) -> Layout:
    """A cluster folder as a first start leaves it, without running it."""
    layout = Layout("q1w2e3r4t5y6u7i8o9p0aa", tuple(
        NodePorts(i, 39090 + i, 39190 + i, 39290 + i if secure else None) for i in (1, 2, 3)),
        secure)
    folder.mkdir(parents=True)
    (folder / "cluster.json").write_text(layout.to_json() + "\n")
    return layout


def test_cluster_status_without_a_cluster_exits_3_naming_the_default_folder(
        run, tmp_path, monkeypatch):
    monkeypatch.setenv("KATAGATE_BROKER_DIR", str(tmp_path / "state" / "broker"))
    code, out, _ = run("cluster", "status")
    assert (code, out) == (3, f"no cluster in {(tmp_path / 'state' / 'cluster').resolve()}\n")
    assert run("cluster", "stop") == (0, "the cluster was not running\n", "")
    code, _, err = run("cluster", "kill-node", "1")
    assert code == 1
    assert err == (f"katagate cluster: no cluster in {(tmp_path / 'state' / 'cluster').resolve()}"
                   ": run `katagate cluster start`\n")


def test_cluster_status_of_stopped_nodes_names_each_and_the_endpoints(run, tmp_path):
    folder = tmp_path / "c"
    layout = laid_out(folder, secure=True)
    code, out, _ = run("cluster", "status", "--data", str(folder))
    assert code == 3
    assert out.splitlines() == [
        "node 1: stopped", "node 2: stopped", "node 3: stopped",
        # A secure cluster's clients' properties, then the bootstrap servers
        f"KATAGATE_KAFKA_CONFIG_DIR={folder.resolve() / 'clients'}",
        f"KAFKA_BOOTSTRAP_SERVERS={layout.bootstrap_servers}",
    ]
    assert LocalCluster(folder).clients_dir == folder.resolve() / "clients"
    assert set(LocalCluster(folder).status()) == {1, 2, 3}
    assert not any(s.running for s in LocalCluster(folder).status().values())
    assert run("cluster", "stop", "--data", str(folder)) == (
        0, "the cluster was not running\n", "")
    code, _, err = run("cluster", "kill-node", "2", "--data", str(folder))
    assert (code, err) == (1, "katagate cluster: node 2 is not running\n")


def test_a_plaintext_cluster_status_names_no_client_properties(run, tmp_path):
    folder = tmp_path / "c"
    layout = laid_out(folder, secure=False)
    code, out, _ = run("cluster", "status", "--data", str(folder))
    assert code == 3
    assert "KATAGATE_KAFKA_CONFIG_DIR" not in out
    assert out.splitlines()[-1] == f"KAFKA_BOOTSTRAP_SERVERS={layout.bootstrap_servers}"


def test_a_formatted_cluster_is_not_restarted_with_another_size_or_security(run, tmp_path):
    folder = tmp_path / "c"
    laid_out(folder, secure=False)
    code, _, err = run("cluster", "start", "--brokers", "2", "--data", str(folder))
    assert (code, err) == (1, f"katagate cluster: the cluster in {folder.resolve()} has 3 "
                              "nodes, not 2: its quorum is formatted; remove the folder to "
                              "start another\n")
    code, _, err = run("cluster", "start", "--secure", "--data", str(folder))
    assert code == 1
    assert "was set up without --secure; remove the folder to start a secure one" in err
    assert sorted(p.name for p in folder.iterdir()) == ["cluster.json"]  # nothing started


@pytest.mark.parametrize(("argv", "message"), [
    (("cluster", "start", "--brokers", "0"), "argument --brokers: must be in 1-9, not 0"),
    (("cluster", "start", "--brokers", "10"), "argument --brokers: must be in 1-9, not 10"),
    (("cluster", "start", "--brokers", "three"),
     "argument --brokers: must be a number in 1-9, not 'three'"),
    (("cluster", "kill-node", "-1"), "argument node: must be in 1-9, not -1"),
    (("cluster", "start-node", "x"), "argument node: must be a number in 1-9, not 'x'"),
    (("cluster", "start", "--port", "0"), "argument --port: --port must be in 1-65535, not 0"),
])
def test_bad_cluster_arguments_exit_2_naming_the_range(capsys, argv, message):
    assert message in refused(capsys, *argv)


# --- ingest/handler.py: handle_exception ----------------------------------------------------


class BrokenWriter:
    """A writer with a bug: every submission raises."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, *_args: Any) -> Any:
        self.calls += 1
        raise RuntimeError("bug: /secret/path and internals")


@contextmanager
def smtp_edge(handler: IngestHandler) -> Iterator[tuple[str, int]]:
    """The gateway's SMTP server (ingest.listener.serve) with `handler`, in a thread."""
    settings = ingest_settings(commit_timeout_s=5)
    stop, listening = threading.Event(), threading.Event()
    where: list[tuple[str, int]] = []

    def ready(host: str, port: int) -> None:
        where.append((host, port))
        listening.set()

    thread = threading.Thread(
        target=lambda: asyncio.run(serve(settings, handler, stop, ready, lambda: None,
                                     lambda _open: None)),
        daemon=True)
    thread.start()
    try:
        assert listening.wait(10), "the SMTP server did not listen"
        yield where[0]
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def test_a_bug_in_the_handler_costs_the_sender_a_retry_never_a_message_or_details(caplog):
    writer = BrokenWriter()
    handler = IngestHandler(ingest_settings(), lambda: ControlState(), writer)  # type: ignore[arg-type]
    with (caplog.at_level(logging.ERROR, logger="katagate.ingest.handler"),
          smtp_edge(handler) as address):
        client = RawClient(address)
        try:
            client.envelope()
            # When the message's data is in and the handler fails on it
            reply = client.cmd(b"Subject: hi\r\n\r\nbody\r\n.")
            # Then a temporary failure: the sender keeps the message and tries again
            assert reply == "451 4.3.0 Temporary failure, try again later"
            assert writer.calls == 1
            # And the session goes on
            assert client.cmd("RSET").startswith("250")
            assert client.cmd("NOOP").startswith("250")
            assert client.cmd("QUIT").startswith("221")
        finally:
            client.sock.close()
    # And the bug is in the log with its traceback, not in the reply
    [record] = [r for r in caplog.records if r.getMessage() == "SMTP session error"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "secret" not in reply
