"""The emulator's state in SQLite (WAL): sensors, scans, detects, faults, the admin account.

The server, the CLI and the console are separate processes; each call opens its own short
connection, and decisions that must be atomic (register a sensor, admit a scan under the
concurrency limit) run in one `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from katagate.kata_emulator.errors import EmulatorError
from katagate.kata_emulator.faults import Faults
from katagate.kata_emulator.verdicts import Detect

SCHEMA = """
CREATE TABLE IF NOT EXISTS sensors (
    sensor_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
    ip TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    decided_at REAL
);
CREATE TABLE IF NOT EXISTS scans (
    sensor_id TEXT NOT NULL,
    scan_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    ready_at REAL NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (sensor_id, scan_id)
);
CREATE TABLE IF NOT EXISTS detects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor_id TEXT NOT NULL,
    scan_id TEXT NOT NULL,
    detect_type TEXT NOT NULL,
    threat_name TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS detects_by_scan ON detects (sensor_id, scan_id);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Scans accepted since the state folder was made, per sensor: what a sensor cost the node.
CREATE TABLE IF NOT EXISTS submissions (sensor_id TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS admins (
    name TEXT PRIMARY KEY, salt BLOB NOT NULL, hash BLOB NOT NULL,
    n INTEGER NOT NULL, r INTEGER NOT NULL, p INTEGER NOT NULL
);
"""
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
DB_FILE = "state.db"
# A sensor's last contact is recorded at most this often, not on every request.
LAST_SEEN_STEP_S = 5.0


@dataclass(frozen=True)
class Sensor:
    sensor_id: str
    status: str  # pending | accepted | rejected
    ip: str
    fingerprint: str
    cert_pem: str
    first_seen: float
    last_seen: float
    decided_at: float | None


@dataclass(frozen=True)
class NewScan:
    sensor_id: str
    scan_id: str
    instance_id: str
    outcome: str  # the state the scan reaches at ready_at
    detects: Sequence[Detect]
    size: int
    sha256: str


@dataclass(frozen=True)
class StoredDetect:
    seq: int
    scan_id: str
    detect_type: str
    threat_name: str
    details: str


class Store:
    def __init__(self, state_dir: Path, *, create: bool = True) -> None:
        if not state_dir.is_dir():
            if not create:
                raise EmulatorError(f"no emulator state in {state_dir} (start `serve` first)")
            state_dir.mkdir(mode=0o700, parents=True)
        self.state_dir = state_dir
        self.path = state_dir / DB_FILE
        self._local = threading.local()
        with closing(self._open()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        os.chmod(self.path, 0o600)  # holds the admin password hash and sensor certificates

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        # WAL with NORMAL: a commit survives the process dying, and costs no fsync.
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _connection(self) -> sqlite3.Connection:
        """The calling thread's connection: the server serves each keep-alive client from one
        thread, so opening a connection per request would cost more than the request."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- sensors ------------------------------------------------------------------------------

    def authorize(self, sensor_id: str, fingerprint: str, cert_pem: str, ip: str,
                  now: float) -> str:
        """`new` (now pending), `pending`, `rejected`, `accepted` or `mismatch` (nothing kept)."""
        with self._read() as conn:
            row = conn.execute("SELECT status, fingerprint, ip, last_seen FROM sensors "
                               "WHERE sensor_id = ?", (sensor_id,)).fetchone()
        if row is not None and row["fingerprint"] != fingerprint:
            return "mismatch"
        if row is not None and row["ip"] == ip and now - row["last_seen"] < LAST_SEEN_STEP_S:
            return str(row["status"])  # nothing to record: no write transaction per request
        with self._write() as conn:
            row = conn.execute("SELECT status, fingerprint FROM sensors WHERE sensor_id = ?",
                               (sensor_id,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO sensors VALUES (?, 'pending', ?, ?, ?, ?, ?, NULL)",
                    (sensor_id, ip, fingerprint, cert_pem, now, now),
                )
                return "new"
            if row["fingerprint"] != fingerprint:
                return "mismatch"
            conn.execute("UPDATE sensors SET last_seen = ?, ip = ? WHERE sensor_id = ?",
                         (now, ip, sensor_id))
            return str(row["status"])

    def sensors(self) -> list[Sensor]:
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM sensors ORDER BY first_seen, sensor_id")
            return [Sensor(**dict(row)) for row in rows]

    def sensor(self, sensor_id: str) -> Sensor:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM sensors WHERE sensor_id = ?",
                               (sensor_id,)).fetchone()
        if row is None:
            raise EmulatorError(f"no sensor {sensor_id!r} (see `sensors list`)")
        return Sensor(**dict(row))

    def decide(self, sensor_id: str, status: str, now: float) -> Sensor:
        """Accept or reject an integration request (or change an earlier decision)."""
        if status not in ("accepted", "rejected"):
            raise ValueError(status)
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE sensors SET status = ?, decided_at = ? WHERE sensor_id = ?",
                (status, now, sensor_id),
            ).rowcount
        if not changed:
            raise EmulatorError(f"no sensor {sensor_id!r} (see `sensors list`)")
        return self.sensor(sensor_id)

    def remove(self, sensor_id: str) -> None:
        """Forget a sensor and its scans: its next request becomes a new pending request."""
        with self._write() as conn:
            if not conn.execute("DELETE FROM sensors WHERE sensor_id = ?",
                                (sensor_id,)).rowcount:
                raise EmulatorError(f"no sensor {sensor_id!r} (see `sensors list`)")
            conn.execute("DELETE FROM scans WHERE sensor_id = ?", (sensor_id,))
            conn.execute("DELETE FROM detects WHERE sensor_id = ?", (sensor_id,))

    # -- scans --------------------------------------------------------------------------------

    def finish_now(self, now: float) -> int:
        """Every scan still processing is ready now (the verdicts a test held back arrive)."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE scans SET ready_at = ? WHERE state = 'processing' AND ready_at > ?",
                (now, now))
            return int(cursor.rowcount)

    def submit(self, scan: NewScan, now: float, ready_at: float, limit: int) -> str:
        """`created`, `exists` (same scanId again: not rescanned) or `busy` (at the limit)."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM scans WHERE sensor_id = ? AND scan_id = ?",
                            (scan.sensor_id, scan.scan_id)).fetchone():
                return "exists"
            _finish_ready(conn, scan.sensor_id, now)
            (busy,) = conn.execute(
                "SELECT count(*) FROM scans WHERE sensor_id = ? AND state = 'processing'",
                (scan.sensor_id,),
            ).fetchone()
            if busy >= limit:
                return "busy"
            conn.execute(
                "INSERT INTO scans VALUES (?, ?, ?, ?, ?, 'processing', ?, ?, ?)",
                (scan.sensor_id, scan.scan_id, scan.instance_id, now, ready_at, scan.outcome,
                 scan.size, scan.sha256),
            )
            conn.execute("INSERT INTO submissions VALUES (?, 1) ON CONFLICT (sensor_id) "
                         "DO UPDATE SET count = count + 1", (scan.sensor_id,))
            if scan.outcome == "detect":
                conn.executemany(
                    "INSERT INTO detects (sensor_id, scan_id, detect_type, threat_name, details)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(scan.sensor_id, scan.scan_id, d.detect_type, d.threat_name, d.details)
                     for d in scan.detects],
                )
            return "created"

    def scan_states(self, sensor_id: str, now: float) -> list[tuple[str, str]]:
        """(scanId, state) of every scan of the sensor, oldest first."""
        with self._write() as conn:
            _finish_ready(conn, sensor_id, now)
            rows = conn.execute(
                "SELECT scan_id, state FROM scans WHERE sensor_id = ?"
                " ORDER BY submitted_at, scan_id", (sensor_id,),
            ).fetchall()
        return [(row["scan_id"], row["state"]) for row in rows]

    def detects(self, sensor_id: str, now: float, types: Sequence[str], after: int,
                limit: int) -> tuple[list[StoredDetect], bool]:
        """Detects of finished scans after the cursor `after`, and whether more follow."""
        with self._write() as conn:
            _finish_ready(conn, sensor_id, now)
            rows = conn.execute(
                "SELECT d.seq, d.scan_id, d.detect_type, d.threat_name, d.details"
                " FROM detects d JOIN scans s"
                " ON s.sensor_id = d.sensor_id AND s.scan_id = d.scan_id"
                " WHERE d.sensor_id = ? AND s.state = 'detect' AND d.seq > ?"
                " AND d.detect_type IN (SELECT value FROM json_each(?))"
                " ORDER BY d.seq LIMIT ?",
                (sensor_id, after, json.dumps(list(types)), limit + 1),
            ).fetchall()
        found = [StoredDetect(**dict(row)) for row in rows]
        return found[:limit], len(found) > limit

    def delete_scan(self, sensor_id: str, scan_id: str) -> bool:
        with self._write() as conn:
            conn.execute("DELETE FROM detects WHERE sensor_id = ? AND scan_id = ?",
                         (sensor_id, scan_id))
            return bool(conn.execute("DELETE FROM scans WHERE sensor_id = ? AND scan_id = ?",
                                     (sensor_id, scan_id)).rowcount)

    def delete_scans(self, sensor_id: str) -> int:
        with self._write() as conn:
            conn.execute("DELETE FROM detects WHERE sensor_id = ?", (sensor_id,))
            return int(conn.execute("DELETE FROM scans WHERE sensor_id = ?",
                                    (sensor_id,)).rowcount)

    def submissions(self) -> dict[str, int]:
        """Scans accepted (a repeated scanId not counted), by sensor, since the state began."""
        with self._read() as conn:
            return {row["sensor_id"]: int(row["count"])
                    for row in conn.execute("SELECT sensor_id, count FROM submissions")}

    # -- faults -------------------------------------------------------------------------------

    def faults(self) -> Faults:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = 'faults'").fetchone()
        return Faults.from_dict(json.loads(row["value"])) if row else Faults()

    def set_faults(self, faults: Faults) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO settings VALUES ('faults', ?)",
                         (json.dumps(faults.to_dict()),))

    # -- the administrator account -----------------------------------------------------------

    def set_admin_password(self, name: str, password: str) -> None:
        salt = os.urandom(16)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **SCRYPT)
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO admins VALUES (?, ?, ?, ?, ?, ?)",
                         (name, salt, digest, SCRYPT["n"], SCRYPT["r"], SCRYPT["p"]))

    def has_admin(self) -> bool:
        with self._read() as conn:
            return conn.execute("SELECT 1 FROM admins LIMIT 1").fetchone() is not None

    def check_admin(self, name: str, password: str) -> bool:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM admins WHERE name = ?", (name,)).fetchone()
        if row is None:
            return False
        digest = hashlib.scrypt(password.encode("utf-8"), salt=row["salt"], n=row["n"],
                                r=row["r"], p=row["p"])
        return hmac.compare_digest(digest, row["hash"])


def _finish_ready(conn: sqlite3.Connection, sensor_id: str, now: float) -> None:
    """Scans past their ready time take their outcome: the lifecycle is computed on read."""
    conn.execute(
        "UPDATE scans SET state = outcome"
        " WHERE sensor_id = ? AND state = 'processing' AND ready_at <= ?",
        (sensor_id, now),
    )
