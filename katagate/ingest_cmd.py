"""`katagate ingest run`: the SMTP edge, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from katagate.eventlog.settings import KafkaSettings
from katagate.log_output import add_options as add_log_options
from katagate.process import add_config_option, settings_or_exit, stop_on_signals, use_config


def register(commands: Any) -> None:
    parser = commands.add_parser("ingest", help="run the SMTP edge (ingest stage)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run", help="accept mail until SIGTERM; settings from KATAGATE_INGEST_* variables"
    )
    run.add_argument("--host", help="listen address (overrides KATAGATE_INGEST_HOST)")
    run.add_argument("--port", type=int, help="listen port (overrides KATAGATE_INGEST_PORT)")
    # One of the SMTP workers `processes` > 1 starts (ingest/workers.py); not for operators.
    run.add_argument("--worker", type=int, metavar="N", help=argparse.SUPPRESS)
    run.add_argument("--supervisor", type=int, metavar="PID", help=argparse.SUPPRESS)
    run.add_argument("--listen-fds", type=_fds, default=(), help=argparse.SUPPRESS)
    run.add_argument("--sessions-fd", type=int, help=argparse.SUPPRESS)
    add_config_option(run)
    add_log_options(run)
    run.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    # Imported here: each process registers only its own stage's metrics.
    from katagate.ingest.run import run_ingest
    from katagate.ingest.settings import IngestSettings
    use_config(args, "ingest")
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    settings = settings_or_exit(IngestSettings, "ingest", **overrides)
    kafka = settings_or_exit(KafkaSettings, "ingest")
    stop = stop_on_signals(args)
    if args.worker is not None:
        if args.supervisor is None or not args.listen_fds or args.sessions_fd is None:
            print("katagate ingest: --worker is started by ingest's supervisor "
                  "(KATAGATE_INGEST_PROCESSES > 1), with --supervisor, --listen-fds and "
                  "--sessions-fd", file=sys.stderr)
            return 2
        from katagate.ingest.shared_counts import SharedCounts
        from katagate.ingest.workers import follow_supervisor
        follow_supervisor(stop, args.supervisor)
        shared = SharedCounts(args.sessions_fd, args.worker)
        shared.clear(args.worker)  # what a worker before it in this column left
        run_ingest(kafka, settings, stop, listen_fds=args.listen_fds, shared=shared)
        return 0
    if settings.processes > 1:
        from katagate.ingest.workers import run_workers
        try:
            return run_workers(settings, stop, _log_options(args))
        except OSError as exc:
            print(f"katagate ingest: starting {settings.processes} SMTP workers "
                  f"(KATAGATE_INGEST_PROCESSES) on {settings.host}:{settings.port}: {exc}",
                  file=sys.stderr)
            return 2
    run_ingest(kafka, settings, stop)
    return 0


def _fds(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(fd) for fd in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not file descriptors: {value!r}") from None


def _log_options(args: argparse.Namespace) -> list[str]:
    """The log options this process was given, for its workers."""
    return [option for name in ("log_format", "log_level")
            if (value := getattr(args, name, None)) is not None
            for option in (f"--{name.replace('_', '-')}", str(value))]
