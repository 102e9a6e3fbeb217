"""`katagate up` / `katagate down`: the whole gateway on this machine — the broker (unless a
cluster is named), the KATA emulator, the demo sink and every stage as child processes — from
one TOML file with environment overrides. The file is checked whole before anything starts
(`katagate config check`); the children read it themselves (KATAGATE_CONFIG), and get in their
environment only what `up` works out (the broker's address, the metrics ports, the state
folders). A child that dies is started again (katagate/up_watch.py); a stop goes tier by tier
(katagate/stop_tiers.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from katagate.config_sections import check, up_sections
from katagate.eventlog.acls import apply as apply_acls
from katagate.eventlog.acls import plan as plan_acls
from katagate.eventlog.broker import LocalBroker
from katagate.eventlog.clients import new_admin
from katagate.eventlog.config_file import CONFIG_ENV, read
from katagate.eventlog.preflight import check_cluster
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import ensure_topics
from katagate.process import pass_logging_on
from katagate.restart_policy import RestartPolicy
from katagate.state_folder import prepare_state_folder
from katagate.stop_tiers import longest_stop_s, plan_for
from katagate.supervisor import Child, Supervisor, python_module
from katagate.up_kata import write_kata_settings
from katagate.up_sensor import accept_sensor
from katagate.up_watch import serve_up_metrics, watch

ROOT = Path(__file__).resolve().parent.parent


def register(commands: Any) -> None:
    up = commands.add_parser("up", help="run the gateway locally (broker, stages, emulator, sink)")
    up.add_argument("--config", type=Path, default=Path("katagate.toml"))
    up.add_argument("--accept-sensor", action="store_true",
                    help="accept the gateway on the KATA emulator (demos)")
    up.add_argument("--secure", action="store_true",
                    help="the local broker on SASL_SSL with ACLs (katagate broker start "
                         "--secure), every stage with its own principal; grants applied")
    up.add_argument("--detach-after-start", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(run=_up)
    down = commands.add_parser("down", help="stop what `katagate up` started")
    down.add_argument("--config", type=Path, default=Path("katagate.toml"))
    down.set_defaults(run=_down)


def load_config(path: Path) -> dict[str, Any]:
    """The file as `read` takes it (a bad one is a ConfigFileError: exit 2, named), or none."""
    return read(path) if path.exists() else {}


def checked_config(path: Path) -> dict[str, Any]:
    """The file, checked whole (every problem listed, exit 2), and named to every child in
    KATAGATE_CONFIG; no file: the defaults. `up`'s own sections with the environment's
    values (config_sections.up_sections)."""
    if path.exists():
        problems = check(path).problems
        if problems:
            for problem in problems:
                print(f"katagate up: {path}: {problem}", file=sys.stderr)
            raise SystemExit(2)
        os.environ[CONFIG_ENV] = str(path.resolve())
    try:
        return up_sections(load_config(path))
    except ValidationError as exc:  # the environment's (the file's were checked)
        for error in exc.errors():
            print(f"katagate up: environment: {error['loc'][0]}: {error['msg']}",
                  file=sys.stderr)
        raise SystemExit(2) from None


def section_env(prefix: str, values: dict[str, Any], file_section: dict[str, Any]
                ) -> dict[str, str]:
    """KATAGATE_<PREFIX>_<KEY> for each value `up` works out that neither the environment nor
    the file's section sets."""
    env: dict[str, str] = {}
    for key, value in values.items():
        name = f"KATAGATE_{prefix}_{key.upper()}"
        if name in os.environ or key in file_section:
            continue
        env[name] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return env


def _state_dir(config: dict[str, Any]) -> Path:
    return Path(config.get("paths", {}).get("state_dir", ".katagate")).resolve()


def _metrics_base(config: dict[str, Any]) -> int:
    return int(config.get("metrics", {}).get("base_port", 9101))


def _scanner_state(config: dict[str, Any], state: Path) -> Path:
    """Where the scanner keeps its sensor identity: its own setting, else what `up` passes."""
    named = os.environ.get("KATAGATE_SCANNER_STATE_DIR") or config.get("scanner", {}).get(
        "state_dir")
    return Path(named).resolve() if named else state


def _up(args: argparse.Namespace) -> int:
    """The whole gateway, step by step; everything started is stopped on the way out."""
    config = checked_config(args.config)
    up_cfg = config.get("up", {})
    policy = RestartPolicy(limit=up_cfg.get("restart_limit", 5),
                           window_s=up_cfg.get("restart_window_s", 300))
    # KATAGATE_LOG_FORMAT, KATAGATE_LOG_LEVEL, KATAGATE_SYSLOG; and per stage
    log_env = pass_logging_on(config.get("logging", {}))
    state = _state_dir(config)
    note = prepare_state_folder(state)  # refuses another user's folder before anything starts
    if note:
        print(note, flush=True)
    supervisor = Supervisor(ROOT)
    supervisor.named_env = log_env
    brokers: list[LocalBroker] = []
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    (state / "up.pid").write_text(f"{os.getpid()}\n")
    metrics = None
    try:
        # `up`'s own /metrics (its restarts): base_port + 6, after the stages' 0..5.
        try:
            metrics = serve_up_metrics(_metrics_base(config) + 6)
        except OSError as exc:
            print(f"katagate up: [metrics] base_port + 6 ({_metrics_base(config) + 6}), up's "
                  f"own /metrics: cannot listen: {exc}; choose another base_port",
                  file=sys.stderr)
            return 2
        kafka = _kafka(config.get("kafka", {}), state, args.secure, brokers)
        node_address, node_port = _kata_node(supervisor, config, state)
        if not write_kata_settings(kafka, config.get("kata", {}), node_address, node_port):
            return 2
        _sink(supervisor, config.get("sink", {"enabled": True}), state)
        _stages(supervisor, config, state)
        if args.accept_sensor and config.get("emulator", {"enabled": True}).get("enabled", True):
            accept_sensor(state / "kata", _scanner_state(config, state), stop,
                          lambda line: print(line, flush=True))
        print("katagate is up; Ctrl-C or `katagate down` stops it", flush=True)
        return watch(supervisor, stop, policy, lambda line: print(line, flush=True))
    finally:
        supervisor.stop_in_tiers(plan_for(config), lambda line: print(line, flush=True))
        for broker in brokers:
            broker.stop()
        if metrics is not None:
            metrics.close()
        (state / "up.pid").unlink(missing_ok=True)


def _kafka(kafka_cfg: dict[str, Any], state: Path, secure: bool,
           brokers: list[LocalBroker]) -> KafkaSettings:
    """The cluster named, or a local broker (secure if asked or set up so); the environment
    every stage inherits; the topics; with a secure backbone, the grants."""
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or kafka_cfg.get("bootstrap_servers")
    # The stages' librdkafka properties: one file, or a folder of one per principal.
    client_files = {name: os.environ.get(name) or kafka_cfg.get(key) for name, key in (
        ("KATAGATE_KAFKA_CONFIG", "config_file"), ("KATAGATE_KAFKA_CONFIG_DIR", "config_dir"))}
    if not servers:
        broker = LocalBroker(state / "broker", secure=True if secure else None)
        brokers.append(broker)
        started = broker.start(port=int(kafka_cfg.get("broker_port", 9092)))
        servers = started.bootstrap_servers or ""
        if started.clients_dir is not None:
            client_files["KATAGATE_KAFKA_CONFIG_DIR"] = str(started.clients_dir)
            secure = True
    prefix = os.environ.get("KATAGATE_TOPIC_PREFIX", kafka_cfg.get("topic_prefix", "katagate"))
    os.environ.update({"KAFKA_BOOTSTRAP_SERVERS": servers, "KATAGATE_TOPIC_PREFIX": prefix,
                       **{name: str(Path(value).resolve())
                          for name, value in client_files.items() if value}})
    kafka = KafkaSettings(principal="admin")
    check_cluster(kafka)
    ensure_topics(new_admin(kafka), kafka)
    print(f"kafka={servers}", flush=True)
    if secure:
        _apply_grants(kafka)
        print(f"kafka-config-dir={os.environ.get('KATAGATE_KAFKA_CONFIG_DIR', '')}", flush=True)
    return kafka


def _kata_node(supervisor: Supervisor, config: dict[str, Any], state: Path) -> tuple[str, int]:
    """The Central Node's address: the configured one, or the emulator started here."""
    kata_cfg = config.get("kata", {})
    emulator_cfg = config.get("emulator", {"enabled": True})
    address = kata_cfg.get("central_node", "emulator")
    port = int(kata_cfg.get("central_node_port", 443))
    if not emulator_cfg.get("enabled", True):
        return address, port
    argv = python_module("katagate", "kata-emulator", "serve", "--state", str(state / "kata"),
                         "--port", str(emulator_cfg.get("port", 8443)), "--log-level", "WARNING")
    if emulator_cfg.get("rules"):
        argv += ["--rules", str(Path(emulator_cfg["rules"]).resolve())]
    emulator = supervisor.start(Child("kata-emulator", argv, state / "logs" / "kata-emulator.log",
                                      ready_prefix="kata-emulator listening on"))
    url = emulator.ready_line.split("listening on ", 1)[1].split()[0]
    print(f"kata={url}", flush=True)
    if address == "emulator":
        return "127.0.0.1", int(url.rsplit(":", 1)[1])
    return address, port


def _sink(supervisor: Supervisor, sink_cfg: dict[str, Any], state: Path) -> None:
    if not sink_cfg.get("enabled", True):
        return
    sink = supervisor.start(Child(
        "sink", python_module("katagate", "sink", "run", "--port",
                              str(sink_cfg.get("port", 2526)), "--dir", str(state / "sink")),
        state / "logs" / "sink.log", ready_prefix="sink="))
    print(sink.ready_line.split()[0], flush=True)


def _stages(supervisor: Supervisor, config: dict[str, Any], state: Path) -> None:
    """Scanner and decider, the projector and the console, the audit checkpointer, and ingest
    last: mail is accepted only once everything behind it runs."""
    # Each process's unauthenticated /metrics on its own loopback port: base_port + 0..5,
    # and `up`'s own + 6 (served by _up).
    metrics = {name: _metrics_base(config) + i for i, name in enumerate(
        ("ingest", "scanner", "decider", "projector", "console", "audit", "up"))}
    stages = {
        "scanner": section_env("SCANNER", {"metrics_port": metrics["scanner"],
                                           "state_dir": str(state)}, config.get("scanner", {})),
        "decider": section_env("DECIDER", {"metrics_port": metrics["decider"]},
                               config.get("decider", {})),
    }
    for name, env in stages.items():
        supervisor.start(Child(name, python_module("katagate", name, "run"),
                               state / "logs" / f"{name}.log", env=env))
    projector_cfg = config.get("projector", {})
    projector = supervisor.start(Child(
        "projector", python_module("katagate", "projector", "run", "--port",
                                   str(projector_cfg.get("port", 8080)), "--state-dir",
                                   str(state / "projector")),
        state / "logs" / "projector.log",
        env=section_env("PROJECTOR", {"metrics_port": metrics["projector"]}, projector_cfg),
        ready_prefix="projector="))
    print(projector.ready_line.split()[0], flush=True)
    _projector_token(state, projector_cfg, "cli")  # the admin commands' (admin/projector_reader.py)
    _start_console(supervisor, config.get("console", {}), state,
                   _projector_url(projector.ready_line),
                   _projector_token(state, projector_cfg, "console"), metrics["console"])
    supervisor.start(Child(
        "audit", python_module("katagate", "audit", "checkpoint", "run"),
        # The audit key stays where `katagate audit verify` looks for it by default.
        state / "logs" / "audit.log",
        env=section_env("AUDIT", {"metrics_port": metrics["audit"]}, config.get("audit", {}))))
    ingest = supervisor.start(Child(
        "ingest", python_module("katagate", "ingest", "run"), state / "logs" / "ingest.log",
        env=section_env("INGEST", {"metrics_port": metrics["ingest"]},
                        config.get("ingest", {})), ready_prefix="smtp="))
    print(ingest.ready_line.split()[0], flush=True)
    print("metrics=" + ",".join(f"{name}:127.0.0.1:{port}" for name, port in metrics.items()),
          flush=True)
    print(f"logs={state / 'logs'}", flush=True)


def _apply_grants(kafka: KafkaSettings) -> None:
    """Each principal's grants made exactly true: every stage then runs on its own."""
    admin = new_admin(kafka)
    change, _foreign = plan_acls(admin, kafka.topic_prefix, kafka.request_timeout_s)
    apply_acls(admin, change, kafka.request_timeout_s, kafka.topic_prefix)
    print(f"acls: {len(change.create)} granted, {len(change.delete)} removed, "
          f"{change.kept} in force already", flush=True)


def _projector_url(ready_line: str) -> str:
    """Where the console reaches the projector: its ready line's address, by a loopback name
    when it listens on every address (the projector accepts its own names only)."""
    host, _, port = ready_line.split()[0].split("=", 1)[1].rpartition(":")
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - a name for it
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _projector_token(state: Path, projector: dict[str, Any], holder_name: str) -> Path:
    """A read token for the projector, named after its holder (the console, the CLI), made once
    into a 0600 file in `<state>/<holder>/` and kept while valid (revoked or lost: a new one).
    Only the file's name is passed on, so the token never reaches `ps`, a log or an event."""
    from katagate.projector.guard import token_file

    tokens = Path(os.environ.get("KATAGATE_PROJECTOR_TOKENS_FILE")
                  or projector.get("tokens_file") or state / "projector" / "tokens.json")
    holder = state / holder_name / "projector-token"
    if token_file(tokens).ensure_in_file(holder_name, holder, datetime.now(UTC).isoformat()):
        print(f"{holder_name}-projector-token={holder} (made)", flush=True)
    return holder


def _start_console(supervisor: Supervisor, console: dict[str, Any], state: Path,
                   projector_url: str, token_file: Path, metrics_port: int) -> None:
    """The web console, and where its first password is (`katagate console run` writes it
    there, mode 0600, when KATAGATE_CONSOLE_ADMIN_PASSWORD does not set one)."""
    child = supervisor.start(Child(
        "console", python_module("katagate", "console", "run", "--port",
                                 str(console.get("port", 8081)), "--state-dir",
                                 str(state / "console"), "--projector-url", projector_url,
                                 "--projector-token-file", str(token_file)),
        state / "logs" / "console.log",
        env=section_env("CONSOLE", {"metrics_port": metrics_port}, console),
        ready_prefix="console="))
    print(f"console=http://{child.ready_line.split()[0].split('=', 1)[1]}", flush=True)
    name = os.environ.get("KATAGATE_CONSOLE_ADMIN_NAME", console.get("admin_name", "admin"))
    password = state / "console" / "initial-admin-password"
    where = (f"the generated password is in {password}" if password.exists() else
             "its password was set before (KATAGATE_CONSOLE_ADMIN_PASSWORD or "
             "`katagate console password`)")
    print(f"console-admin={name}: {where}", flush=True)


def _down(args: argparse.Namespace) -> int:
    pid_file = _state_dir(up_sections(load_config(args.config))) / "up.pid"
    if not pid_file.exists():
        print("katagate is not up (no up.pid)")
        return 0
    text = pid_file.read_text().strip()
    if not (text.isascii() and text.isdigit()):
        print(f"{pid_file} holds {text[:20]!r}, not a process id; remove it if katagate is down")
        return 1
    pid = int(text)
    if Path(f"/proc/{pid}").exists() and not _is_katagate(pid):
        # A stale file after a reboot may name an unrelated process: never signal that.
        pid_file.unlink(missing_ok=True)
        print(f"katagate was not running (pid {pid} is another program; up.pid removed)")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        print("katagate was not running")
        return 0
    # As long as up's stop can take: each tier's drain, then the broker's (stop_tiers.py).
    wait_s = longest_stop_s(plan_for(load_config(args.config)))
    print(f"waiting up to {wait_s:.0f} s for katagate (pid {pid}) to stop: ingest, the stages, "
          "the sink and the emulator, then the broker", flush=True)
    deadline = time.monotonic() + wait_s
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    print("katagate stopped" if not pid_file.exists() else
          f"katagate did not stop in {wait_s:.0f} s (pid {pid})")
    return 0 if not pid_file.exists() else 1


def _is_katagate(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"katagate" in part for part in argv) and b"up" in argv
