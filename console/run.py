"""The console process: the admin account on first start, then uvicorn serving the app until
SIGTERM or SIGINT. Prints `console=HOST:PORT` once it listens, like every stage."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from katagate.console.accounts import FirstStart
from katagate.console.app import create_app
from katagate.console.service import bootstrap
from katagate.console.settings import ConsoleSettings
from katagate.eventlog.health import Health, beating_task
from katagate.eventlog.health_server import serve_health
from katagate.eventlog.preflight import prepare_stage
from katagate.eventlog.settings import KafkaSettings
from katagate.schemas.errors import KatagateError

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


class BadTlsFiles(KatagateError, ValueError):
    """tls_cert_file / tls_key_file that cannot serve HTTPS; the message names the setting."""


def check_tls(settings: ConsoleSettings) -> bool:
    """True when the console serves HTTPS; refuses half a pair, or files that do not load."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if (cert is None) != (key is None):
        missing = "tls_key_file" if key is None else "tls_cert_file"
        raise BadTlsFiles(f"setting {missing} (KATAGATE_CONSOLE_{missing.upper()}): needed "
                          "with the other one; set both tls_cert_file and tls_key_file, or "
                          "neither")
    if cert is None or key is None:
        return False
    for name, path in (("tls_cert_file", cert), ("tls_key_file", key)):
        if not path.is_file():
            raise BadTlsFiles(f"setting {name} (KATAGATE_CONSOLE_{name.upper()}): {path} is "
                              "not a readable file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise BadTlsFiles(f"settings tls_cert_file and tls_key_file: {cert} and {key} are not "
                          f"a PEM certificate and its private key ({exc})") from exc
    return True


def http_server(app: FastAPI, settings: ConsoleSettings) -> uvicorn.Server:
    """uvicorn as the console runs it: HTTPS when check_tls says so (TLS 1.2 at least)."""
    tls = check_tls(settings)
    return uvicorn.Server(uvicorn.Config(
        app, log_level="warning", access_log=False, proxy_headers=False, server_header=False,
        timeout_graceful_shutdown=5,
        ssl_certfile=settings.tls_cert_file if tls else None,
        ssl_keyfile=settings.tls_key_file if tls else None))


async def serve(server: uvicorn.Server, listener: socket.socket,
                ready: Callable[[], None], beat: Callable[[], object]) -> None:
    """Serve on `listener` until `server.should_exit`; `ready` once connections are taken;
    `beat` each second while the event loop runs (a request blocking it stops the beats)."""
    # `startup` runs before the loop accepts connections; say we listen after it.
    config_task = asyncio.create_task(server.serve(sockets=[listener]))
    beating = asyncio.create_task(beating_task(beat))
    while not server.started and not config_task.done():
        await asyncio.sleep(0.02)
    if server.started:
        ready()
    try:
        await config_task
    finally:
        beating.cancel()


def run_console(kafka: KafkaSettings, settings: ConsoleSettings, stop: threading.Event) -> None:
    try:
        check_tls(settings)  # before anything starts
    except BadTlsFiles as exc:
        raise SystemExit(f"console: {exc}") from None
    kafka = prepare_stage(kafka, "console", topics=False)
    health = Health(settings.health_stall_s)
    part = health.part("console", blocking_s=kafka.request_timeout_s)  # until uvicorn serves
    console = bootstrap(settings, kafka)
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    announce(console.accounts.ensure_admin(settings.admin_name, password))
    if migrated := console.accounts.migrate_tokens():
        print(f"console: {migrated} API token(s) of an earlier release given scope admin "
              "and no expiry, as they worked before", flush=True)
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
    # Unauthenticated, so not on the console's port.
    metrics = serve_health(settings.metrics_host, settings.metrics_port, health)
    if metrics is not None:
        print("console-metrics={}:{}".format(*metrics.address), flush=True)
    server = http_server(create_app(console), settings)

    def stop_when_asked() -> None:
        stop.wait()
        server.should_exit = True

    # In the main thread uvicorn also stops on SIGTERM/SIGINT itself (then passes them on).
    threading.Thread(target=stop_when_asked, name="console-stop", daemon=True).start()

    def ready() -> None:
        # Kafka and the projector are asked per request; an answer names what failed.
        part.ready("serving", f"{host}:{port}")
        print(f"console={host}:{port}", flush=True)

    try:
        asyncio.run(serve(server, listener, ready, part.beat))
    finally:
        if metrics is not None:
            metrics.close()
        console.close()
