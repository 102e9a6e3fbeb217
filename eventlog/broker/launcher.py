"""Start, stop and inspect a real single-node Apache Kafka broker from its Maven jars.

The broker runs as a detached JVM that outlives the command that started it; its folder holds
the configuration, the KRaft storage, the log and a pid file, so `stop` and `status` need only
the folder.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from katagate.eventlog.broker.classpath import ensure_classpath, java_executable
from katagate.eventlog.broker.properties import log4j2_properties, new_cluster_id, server_properties
from katagate.eventlog.broker.tls import TlsFiles, ensure_tls
from katagate.eventlog.broker.users import broker_client_config, ensure_users
from katagate.eventlog.errors import BrokerError

DEFAULT_PORT = 9092
JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    # Two cores and a small heap: the serial collector costs least and starts fastest.
    "-XX:+UseSerialGC",
    "-Djava.awt.headless=true",
)


def default_data_dir() -> Path:
    if explicit := os.environ.get("KATAGATE_BROKER_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "katagate" / "broker"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports, below the kernel's ephemeral range: a port
    in that range may be taken meanwhile by any outgoing connection, which free_port() cannot
    rule out for the neighbours of the port it found."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    draw = random.Random()  # noqa: S311 - picking a port, not a secret
    for _ in range(200):
        base = draw.randrange(10000, max(10001, low - count))
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + count):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise OSError(f"no {count} consecutive free ports below {low}")


def port_answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    port: int | None
    # A secure broker: the folder of its principals' client properties (KATAGATE_KAFKA_CONFIG_DIR)
    clients_dir: Path | None = None

    @property
    def bootstrap_servers(self) -> str | None:
        return f"127.0.0.1:{self.port}" if self.port else None


@dataclass(frozen=True)
class Membership:
    """A node's place in a cluster: its id, every voter's controller port, the shared id."""

    node_id: int
    voters: dict[int, int]
    cluster_id: str


class LocalBroker:
    """One broker folder: `start` formats it on first use and reuses it afterwards. Alone by
    default; with a `membership`, one node of a cluster (see cluster.py)."""

    def __init__(self, data_dir: Path | None = None, cache_dir: Path | None = None, *,
                 membership: Membership | None = None, advertised_port: int | None = None,
                 internal_port: int | None = None, secure: bool | None = None,
                 tls_dir: Path | None = None) -> None:
        """`secure`: SASL_SSL for clients, mutual TLS between nodes, ACLs on; None keeps what
        the folder was first started with (plaintext for a new one)."""
        self.data_dir = (data_dir or default_data_dir()).resolve()
        self.cache_dir = cache_dir
        self.membership = membership
        self.advertised_port = advertised_port
        self.internal_port = internal_port
        self._secure = secure
        self.tls_dir = (tls_dir or self.data_dir / "tls").resolve()

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def port_file(self) -> Path:
        return self.data_dir / "broker.port"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def secure(self) -> bool:
        marked = (self.data_dir / "secure").exists()
        if self._secure is None or self._secure == marked:
            return marked
        if (self.data_dir / "kraft" / "meta.properties").exists():
            raise BrokerError(
                f"the broker in {self.data_dir} was set up "
                f"{'with' if marked else 'without'} --secure; start it the same way, or remove "
                "the folder to start another")
        return self._secure

    @property
    def clients_dir(self) -> Path:
        return self.data_dir / "clients"

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        port = int(self.port_file.read_text()) if self.port_file.exists() else None
        clients = self.clients_dir if self.secure and self.clients_dir.exists() else None
        return BrokerStatus(running=pid is not None, pid=pid, port=port if pid else None,
                            clients_dir=clients)

    def _internal_port(self) -> int | None:
        """A secure broker's mutual-TLS listener (between nodes, and its own administration)."""
        if self.internal_port is not None or not self.secure:
            return self.internal_port
        return self._kept_port("internal.port")

    def _kept_port(self, name: str) -> int:
        path = self.data_dir / name
        if path.exists():
            return int(path.read_text())
        port = free_port()
        path.write_text(f"{port}\n")
        return port

    def start(self, port: int | None = None, timeout: float = 120.0) -> BrokerStatus:
        status, process = self.launch(port)
        if process is not None:
            self.wait_ready(process, status.port or DEFAULT_PORT, timeout)
        return self.ensure_users(status)

    def ensure_users(self, status: BrokerStatus) -> BrokerStatus:
        """A secure broker's principals and their client properties (no-op when plaintext)."""
        internal = self._internal_port()
        if not self.secure or internal is None or status.port is None:
            return status
        ensure_users(TlsFiles(self.tls_dir), internal, f"127.0.0.1:{status.port}",
                     self.clients_dir)
        return BrokerStatus(status.running, status.pid, status.port, self.clients_dir)

    def launch(self, port: int | None = None
               ) -> tuple[BrokerStatus, subprocess.Popen[bytes] | None]:
        """Start the JVM without waiting for it (a cluster's nodes must all be up before any
        is ready); the process is None when it was already running."""
        current = self.status()
        if current.running:
            if port is not None and port != current.port:
                raise BrokerError(
                    f"a broker already runs from {self.data_dir} on port {current.port}; "
                    f"stop it before starting it on port {port}"
                )
            return current, None
        port = port or DEFAULT_PORT
        if port_answers(port):
            raise BrokerError(f"port {port} on 127.0.0.1 is taken by another program")
        libs = ensure_classpath(self.cache_dir) / "libs"
        config = self._configure(port)
        self._format_once(libs, config)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = (self.data_dir / "logs" / "broker.out").open("ab")
        command = [
            java_executable(),
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp", f"{libs}/*",
            "kafka.Kafka", str(config),
        ]
        # A new session: the broker must survive the command that started it, and its
        # signals (Ctrl-C in the shell that ran `start`) must not reach it.
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.data_dir,
        )
        out.close()
        self.pid_file.write_text(f"{process.pid}\n")
        self.port_file.write_text(f"{port}\n")
        return BrokerStatus(running=True, pid=process.pid, port=port), process

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM (the broker's shutdown hook closes its logs cleanly), then wait; kill after."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _configure(self, port: int) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The controller's address is part of the formatted quorum: keep it across restarts.
        if self.membership is not None:
            controller_port = self.membership.voters[self.membership.node_id]
        else:
            controller_port = self._kept_port("controller.port")
        tls = None
        if self.secure:
            os.chmod(self.data_dir, 0o700)
            (self.data_dir / "secure").touch()
            tls = ensure_tls(self.tls_dir)
        config = self.data_dir / "server.properties"
        # It holds the key store's password when secure: the owner's only.
        config.unlink(missing_ok=True)
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(server_properties(
                port=port, controller_port=controller_port, log_dir=self.data_dir / "kraft",
                node_id=self.membership.node_id if self.membership else 1,
                voters=self.membership.voters if self.membership else None,
                advertised_port=self.advertised_port, internal_port=self._internal_port(),
                secure=tls,
            ))
        (self.data_dir / "log4j2.properties").write_text(
            log4j2_properties(self.log_file), encoding="utf-8"
        )
        return config

    def _format_once(self, libs: Path, config: Path) -> None:
        if (self.data_dir / "kraft" / "meta.properties").exists():
            return
        output = ""
        for _attempt in (1, 2):  # once more from an empty folder: a first JVM start can stumble
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [
                    java_executable(), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                    "-cp", f"{libs}/*", "kafka.tools.StorageTool",
                    # One argument with '=': an id from an older cluster.json may start
                    # with '-', which argparse would take for an option.
                    "format", "--cluster-id="
                    + (self.membership.cluster_id if self.membership else new_cluster_id()),
                    "-c", str(config),
                ],
                capture_output=True, text=True, check=False, timeout=180,
            )
            if result.returncode == 0:
                return
            output += f"exit {result.returncode}:\n{result.stdout}{result.stderr}\n"
            shutil.rmtree(self.data_dir / "kraft", ignore_errors=True)
        raise BrokerError(f"formatting KRaft storage failed twice:\n{output[-4000:]}")

    def wait_ready(self, process: subprocess.Popen[bytes], port: int, timeout: float,
                   brokers: int = 1) -> None:
        """Until the node answers metadata naming `brokers` brokers (a cluster's size)."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        internal = self._internal_port()
        # A secure broker answers only authenticated clients: ask as the broker itself.
        config: dict[str, Any] = (broker_client_config(TlsFiles(self.tls_dir), internal)
                  if self.secure and internal is not None
                  else {"bootstrap.servers": f"127.0.0.1:{port}", "log_level": 0})
        admin = AdminClient(config)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {process.returncode}; its log:\n{self._tail()}"
                )
            if port_answers(port):
                with contextlib.suppress(Exception):
                    metadata = admin.list_topics(timeout=2)
                    if len(metadata.brokers) >= brokers:
                        return
            time.sleep(0.2)
        self.stop(timeout=10)
        raise BrokerError(
            f"the broker did not answer within {timeout:.0f} s; its log:\n{self._tail()}"
        )

    def _tail(self, lines: int = 40) -> str:
        text = ""
        for name in ("broker.out", "server.log"):
            path = self.data_dir / "logs" / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def _live_pid(self) -> int | None:
        if not self.pid_file.exists():
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
        except ValueError:
            return None
        if not _alive(pid):
            return None
        # A recycled pid must not make us signal some other program.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if str(self.data_dir).encode() in cmdline else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers signal 0; it is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
