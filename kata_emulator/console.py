"""The administrator console, following the Central Node's documented flow (Topic 138416):

log in -> program administrator menu -> Program settings -> Select action -> Configure KSMG
Sensor connections -> the sensors by IP address (unconfirmed ones marked with an asterisk) ->
a sensor's window with both public key fingerprints -> Accept KSMG Sensor / Reject KSMG Sensor.

Plain numbered menus read with input(), so a person, a script or pexpect can drive it. An empty
answer redraws the window (to see a sensor that connected meanwhile).
"""

from __future__ import annotations

import datetime
import getpass
import time
from collections.abc import Callable
from pathlib import Path

from katagate.kata_emulator.errors import EmulatorError
from katagate.kata_emulator.keys import load_server_key
from katagate.kata_emulator.store import Sensor, Store

MAX_LOGIN_ATTEMPTS = 3
REDRAW = -1


class Console:
    def __init__(self, store: Store, state_dir: Path, *, ask: Callable[[str], str] = input,
                 secret: Callable[[str], str] = getpass.getpass,
                 say: Callable[[str], None] = print) -> None:
        self.store, self.state_dir = store, state_dir
        self.ask, self.secret, self.say = ask, secret, say

    def run(self) -> int:
        if not self.store.has_admin():
            self.say("No administrator password is set for this Central Node.\n"
                     "Set one first: kata-emulator admin set-password --state "
                     f"{self.state_dir}")
            return 1
        try:
            if not self._login():
                return 1
            self._main_menu()
        except (EOFError, KeyboardInterrupt):
            self.say("")
        return 0

    def _login(self) -> bool:
        self.say("KATA Central Node (emulator) management console")
        for _ in range(MAX_LOGIN_ATTEMPTS):
            name = self.ask("Administrator account name: ").strip()
            password = self.secret("Password: ")
            if self.store.check_admin(name, password):
                return True
            self.say("Login incorrect.")
        self.say(f"Too many failed login attempts ({MAX_LOGIN_ATTEMPTS}).")
        return False

    def _main_menu(self) -> None:
        while True:
            choice = self._menu("Program administrator menu", [], ["Program settings", "Exit"])
            if choice == 0:
                self._select_action()
            elif choice == 1:
                return

    def _select_action(self) -> None:
        while True:
            choice = self._menu("Select action", [],
                                ["Configure KSMG Sensor connections", "Back"])
            if choice == 0:
                self._sensor_connections()
            elif choice == 1:
                return

    def _sensor_connections(self) -> None:
        while True:
            sensors = self.store.sensors()
            body = ["  IP address       Sensor ID                  Status",
                    "  (* marks an unconfirmed connection)"]
            if not sensors:
                body.append("  No KSMG Sensor has connected yet. Press ENTER to refresh.")
            items = [_sensor_line(s) for s in sensors] + ["Back"]
            choice = self._menu("Configure KSMG Sensor connections", body, items)
            if choice == len(sensors):
                return
            if choice >= 0:
                self._sensor_window(sensors[choice].sensor_id)

    def _sensor_window(self, sensor_id: str) -> None:
        try:
            sensor = self.store.sensor(sensor_id)
        except EmulatorError as exc:
            self.say(str(exc))
            return
        kata = load_server_key(self.state_dir).fingerprint
        body = [
            f"  Sensor ID:                    {sensor.sensor_id}",
            f"  IP address:                   {sensor.ip}",
            f"  Status:                       {_status_text(sensor.status)}",
            f"  First seen:                   {_when(sensor.first_seen)}",
            f"  Last seen:                    {_when(sensor.last_seen)}",
            f"  KSMG public key fingerprint:  {sensor.fingerprint}",
            f"  KATA public key fingerprint:  {kata}",
        ]
        while True:
            choice = self._menu("KSMG Sensor connection", body,
                                ["Accept KSMG Sensor", "Reject KSMG Sensor", "Back"])
            if choice in (0, 1):
                status = "accepted" if choice == 0 else "rejected"
                self.store.decide(sensor_id, status, time.time())
                self.say(f"KSMG Sensor {sensor_id} {status}.")
                return
            if choice == 2:
                return

    def _menu(self, title: str, body: list[str], items: list[str]) -> int:
        """Draw a window and read a choice: its index, or REDRAW on an empty answer."""
        self.say("")
        self.say(title)
        self.say("=" * len(title))
        for line in body:
            self.say(line)
        for number, item in enumerate(items, 1):
            self.say(f"{number:>3}. {item}")
        while True:
            answer = self.ask(f"Select an item [1-{len(items)}] and press ENTER: ").strip()
            if not answer:
                return REDRAW
            if answer.isdigit() and 1 <= int(answer) <= len(items):
                return int(answer) - 1
            self.say(f"Enter a number from 1 to {len(items)}.")


def _sensor_line(sensor: Sensor) -> str:
    mark = "*" if sensor.status == "pending" else " "
    return f"{mark} {sensor.ip:<15}  {sensor.sensor_id:<25}  {_status_text(sensor.status)}"


def _status_text(status: str) -> str:
    return {"pending": "unconfirmed", "accepted": "accepted", "rejected": "rejected"}[status]


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
