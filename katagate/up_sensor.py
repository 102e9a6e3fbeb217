"""`katagate up --accept-sensor`: this gateway's sensor accepted on the KATA emulator (demos).

The sensor is the one whose id the scanner keeps in its state folder (scanner/identity.py).
Already accepted: said, and `up` goes on at once. Pending: accepted. Rejected: said, and left
so: a rejection is an operator's decision on the Central Node (here its stand-in), and a demo
flag must not quietly undo it; `katagate kata-emulator sensors accept` does, by name. Only a
sensor not listed yet is waited for (it appears at the scanner's first request).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from katagate.kata_emulator.store import Sensor, Store
from katagate.scanner.identity import ID_FILE

WAIT_S = 120.0


def sensor_id(scanner_state: Path) -> str | None:
    """This gateway's sensor id, once the scanner has made it (its `sensor/` folder)."""
    path = scanner_state / "sensor" / ID_FILE
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def to_accept(own_id: str | None, sensors: Sequence[Sensor], emulator_state: Path
              ) -> tuple[list[Sensor], str | None]:
    """The sensors to accept now, and the line that ends the wait without accepting (None: go
    on waiting). Knowing our id, only ours counts; before the scanner made it, every pending
    one (the emulator is `up`'s own, so a pending sensor is this gateway's)."""
    if own_id is None:
        return [s for s in sensors if s.status == "pending"], None
    own = [s for s in sensors if s.sensor_id == own_id]
    if not own:
        return [], None
    sensor = own[0]
    if sensor.status == "accepted":
        return [], f"sensor {sensor.sensor_id} already accepted (key {sensor.fingerprint})"
    if sensor.status == "rejected":
        return [], (f"sensor {sensor.sensor_id} was rejected on the emulator (key "
                    f"{sensor.fingerprint}); not accepting it: `katagate kata-emulator sensors "
                    f"accept --state {emulator_state} {sensor.sensor_id}` does")
    return [sensor], None


def accept_sensor(emulator_state: Path, scanner_state: Path, stop: threading.Event,
                  say: Callable[[str], None] = print) -> None:
    deadline = time.monotonic() + WAIT_S
    while not stop.is_set() and time.monotonic() < deadline:
        store = Store(emulator_state)
        accept, said = to_accept(sensor_id(scanner_state), store.sensors(), emulator_state)
        if said:
            say(said)
            return
        if accept:
            for sensor in accept:
                store.decide(sensor.sensor_id, "accepted", time.time())
                say(f"accepted sensor {sensor.sensor_id} (key {sensor.fingerprint})")
            return
        stop.wait(0.5)
    if not stop.is_set():
        say(f"no pending sensor appeared on the emulator within {WAIT_S:.0f} s")
