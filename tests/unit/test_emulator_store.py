"""The emulator's SQLite state: integration requests, scans computed lazily, the admin account."""

from __future__ import annotations

import sqlite3

import pytest

from katagate.kata_emulator.errors import EmulatorError
from katagate.kata_emulator.faults import Faults
from katagate.kata_emulator.store import NewScan, Store
from katagate.kata_emulator.verdicts import Detect

FP, OTHER = "AA:" * 31 + "AA", "BB:" * 31 + "BB"


def new_scan(scan_id: str, outcome: str = "not detected", detects=()) -> NewScan:
    return NewScan("s1", scan_id, "i1", outcome, list(detects), 3, "00" * 32)


def test_unknown_sensor_becomes_pending_then_accepted(tmp_path):
    store = Store(tmp_path)
    assert store.authorize("s1", FP, "PEM", "10.0.0.5", now=100) == "new"
    assert store.authorize("s1", FP, "PEM", "10.0.0.5", now=101) == "pending"
    assert store.sensor("s1").status == "pending"
    store.decide("s1", "accepted", now=102)
    assert store.authorize("s1", FP, "PEM", "10.0.0.6", now=103) == "accepted"
    sensor = store.sensor("s1")
    assert (sensor.first_seen, sensor.last_seen, sensor.ip, sensor.decided_at) == (
        100, 103, "10.0.0.6", 102)


def test_rejected_and_mismatched_sensors(tmp_path):
    store = Store(tmp_path)
    store.authorize("s1", FP, "PEM", "10.0.0.5", now=1)
    store.decide("s1", "rejected", now=2)
    assert store.authorize("s1", FP, "PEM", "10.0.0.5", now=3) == "rejected"
    # a different key for a known sensor id changes nothing
    assert store.authorize("s1", OTHER, "PEM2", "10.0.0.9", now=4) == "mismatch"
    assert (store.sensor("s1").fingerprint, store.sensor("s1").ip) == (FP, "10.0.0.5")


def test_unknown_sensor_is_a_clear_error(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(EmulatorError, match="no sensor 'ghost'"):
        store.decide("ghost", "accepted", now=1)
    with pytest.raises(EmulatorError, match="no sensor"):
        store.sensor("ghost")
    with pytest.raises(EmulatorError, match="no emulator state"):
        Store(tmp_path / "missing", create=False)


def test_state_survives_a_new_store_and_uses_wal(tmp_path):
    Store(tmp_path).authorize("s1", FP, "PEM", "10.0.0.5", now=1)
    assert [s.sensor_id for s in Store(tmp_path).sensors()] == ["s1"]
    with sqlite3.connect(tmp_path / "state.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_scans_are_processing_until_ready_then_take_their_outcome(tmp_path):
    store = Store(tmp_path)
    assert store.submit(new_scan("a"), now=10, ready_at=20, limit=5) == "created"
    assert store.scan_states("s1", now=19) == [("a", "processing")]
    assert store.scan_states("s1", now=20) == [("a", "not detected")]


def test_same_scan_id_is_not_rescanned_and_limit_counts_processing(tmp_path):
    store = Store(tmp_path)
    assert store.submit(new_scan("a"), now=10, ready_at=20, limit=1) == "created"
    assert store.submit(new_scan("a", "detect"), now=11, ready_at=11, limit=1) == "exists"
    assert store.submit(new_scan("b"), now=12, ready_at=30, limit=1) == "busy"
    assert store.submit(new_scan("b"), now=20, ready_at=30, limit=1) == "created"  # a is done
    assert store.scan_states("s1", now=21) == [("a", "not detected"), ("b", "processing")]


def test_detects_appear_when_the_scan_is_done_and_page_in_order(tmp_path):
    store = Store(tmp_path)
    found = [Detect("am", "EICAR-Test-File", "d1"), Detect("yara", "Macro", "d2")]
    store.submit(new_scan("a", "detect", found), now=1, ready_at=5, limit=9)
    store.submit(new_scan("b", "detect", found[:1]), now=1, ready_at=1, limit=9)
    assert store.detects("s1", now=2, types=["am", "yara"], after=0, limit=9)[0][0].scan_id == "b"
    page, more = store.detects("s1", now=6, types=["am", "yara"], after=0, limit=2)
    assert [(d.scan_id, d.threat_name) for d in page] == [
        ("a", "EICAR-Test-File"), ("a", "Macro")]
    assert more
    rest, more = store.detects("s1", now=6, types=["am", "yara"], after=page[-1].seq, limit=2)
    assert [(d.scan_id, d.threat_name) for d in rest] == [("b", "EICAR-Test-File")]
    assert not more
    only_yara, _ = store.detects("s1", now=6, types=["yara"], after=0, limit=9)
    assert [d.threat_name for d in only_yara] == ["Macro"]


def test_delete_one_and_all(tmp_path):
    store = Store(tmp_path)
    for scan_id in ("a", "b", "c"):
        store.submit(new_scan(scan_id, "detect", [Detect("am", "X", "")]), 1, 1, 9)
    assert store.delete_scan("s1", "a")
    assert not store.delete_scan("s1", "a")
    assert store.delete_scans("s1") == 2
    assert store.scan_states("s1", now=5) == []
    assert store.detects("s1", now=5, types=["am"], after=0, limit=9) == ([], False)


def test_faults_and_admin_password(tmp_path):
    store = Store(tmp_path)
    assert store.faults() == Faults()
    store.set_faults(Faults(error_rate=0.5))
    assert Store(tmp_path).faults().error_rate == 0.5
    assert not store.has_admin()
    store.set_admin_password("admin", "s3cret")
    assert store.has_admin()
    assert store.check_admin("admin", "s3cret")
    assert not store.check_admin("admin", "wrong")
    assert not store.check_admin("root", "s3cret")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert b"s3cret" not in raw


def test_held_scans_can_be_finished_at_once(tmp_path):
    store = Store(tmp_path)
    store.submit(new_scan("a"), now=10, ready_at=3600, limit=5)
    store.submit(new_scan("b"), now=10, ready_at=11, limit=5)
    assert store.finish_now(now=12) == 1  # only the one still held
    assert store.scan_states("s1", now=12) == [("a", "not detected"), ("b", "not detected")]
