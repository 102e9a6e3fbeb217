"""The console process: the admin account on first start, then uvicorn serving the app until
SIGTERM or SIGINT. Prints `console=HOST:PORT` once it listens, like every stage."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from prometheus_client import start_http_server

from console.accounts import FirstStart
from console.app import create_app
from console.service import bootstrap
from console.settings import ConsoleSettings
from eventlog.preflight import prepare_stage
from eventlog.settings import KafkaSettings

log = logging.getLogger(__name__)


def announce(first: FirstStart | None) -> None:
    if first is None:
        return
    if first.generated_password is None:
        print(f"console: admin account {first.name!r} created with the password from "
              "KATAGATE_CONSOLE_ADMIN_PASSWORD", flush=True)
        return
    print(f"console: admin account {first.name!r} created; its generated password is in "
          f"{first.password_file} (mode 0600)", flush=True)
    if sys.stdout.isatty():  # shown once on a terminal, never into a log file
        print(f"console: password for {first.name!r}: {first.generated_password}", flush=True)


def http_server(app: FastAPI, settings: ConsoleSettings) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, proxy_headers=False, server_header=False,
        timeout_graceful_shutdown=5))


async def serve(server: uvicorn.Server, listener: socket.socket,
                ready: Callable[[], None]) -> None:
    """Serve on `listener` until `server.should_exit`; `ready` once connections are taken."""
    # `startup` runs before the loop accepts connections; say we listen after it.
    config_task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started and not config_task.done():
        await asyncio.sleep(0.02)
    if server.started:
        ready()
    await config_task


def run_console(kafka: KafkaSettings, settings: ConsoleSettings, stop: threading.Event) -> None:
    kafka = prepare_stage(kafka, "console", topics=False)
    console = bootstrap(settings, kafka)
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    announce(console.accounts.ensure_admin(settings.admin_name, password))
    token_file = settings.projector_token_file
    if token_file is not None and not token_file.is_file():
        console.close()
        raise SystemExit(f"console: projector_token_file {token_file} is not a file: make it "
                         "with `katagate projector token create console --out FILE`")
    if token_file is None:
        log.warning("console: no projector_token_file; the projector will refuse its reads")
    # Bind first, so port 0 works and the ready line names the real port.
    listener = socket.create_server((settings.host, settings.port))
    host, port = listener.getsockname()[:2]
    metrics = None
    if settings.metrics_port is not None:  # unauthenticated, so not on the console's port
        metrics, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
        print("console-metrics={}:{}".format(*metrics.server_address[:2]), flush=True)
    server = http_server(create_app(console), settings)

    def stop_when_asked() -> None:
        stop.wait()
        server.should_exit = True

    # In the main thread uvicorn also stops on SIGTERM/SIGINT itself (then passes them on).
    threading.Thread(target=stop_when_asked, name="console-stop", daemon=True).start()

    def ready() -> None:
        print(f"console={host}:{port}", flush=True)

    try:
        asyncio.run(serve(server, listener, ready))
    finally:
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        console.close()
