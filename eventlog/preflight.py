"""A stage's first contact with the cluster: a setting that can never work (a wrong password, a
CA that does not sign the broker's certificate, a plaintext client on a TLS listener) stops the
stage at start with one line naming the setting. librdkafka itself would retry such a
connection for ever, with its own log lines as the only clue.

A cluster that does not answer at all is not a configuration error: the stages already wait
for Kafka and answer `451` meanwhile, so that case returns and lets them.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time

from confluent_kafka import KafkaError, KafkaException

from katagate.eventlog.client_properties import KafkaConfigError, properties_file
from katagate.eventlog.clients import client_config, new_admin
from katagate.eventlog.principals import principal, topics_of
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import ensure_topics, topic_specs

log = logging.getLogger(__name__)


def _source(settings: KafkaSettings) -> str:
    path = properties_file(settings.config_file, settings.config_dir, settings.principal)
    return f" in {path}" if path is not None else " (no Kafka client properties file)"


def diagnose(error: KafkaError, settings: KafkaSettings) -> str | None:
    """The setting to blame for a connection error, or None when it is not a setting's fault."""
    text = error.str()
    where = _source(settings)
    who = f"principal {settings.principal}" if settings.principal else "this client"
    if error.code() == KafkaError._AUTHENTICATION or "Authentication failed" in text:
        return (f"sasl.username / sasl.password{where}: the broker refused the credentials of "
                f"{who}: {text}")
    if "certificate verify failed" in text or "unable to get local issuer" in text:
        return (f"ssl.ca.location{where}: the broker's certificate is not signed by that CA "
                f"(or none is set): {text}")
    if error.code() == KafkaError._SSL or "SSL handshake failed" in text:
        return f"ssl.*{where}: the TLS handshake with the broker failed: {text}"
    if "security.protocol" in text:
        return (f"security.protocol{where}: the broker closed the connection, as it does when "
                f"the client's protocol is not the listener's: {text}")
    if error.code() == KafkaError._INVALID_ARG:
        return f"Kafka client configuration{where}: {text}"
    return None


def check_cluster(settings: KafkaSettings, wait_s: float = 15.0) -> None:
    """Raise KafkaConfigError when the cluster refuses this client's settings."""
    errors: list[KafkaError] = []
    # Its own diagnosis replaces librdkafka's log lines, which it would repeat at every retry.
    admin = new_admin(settings, {"error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            errors.append(exc.args[0])
        else:
            return
        admin.poll(0.1)  # error callbacks are served from poll()
        for error in errors:
            if (blame := diagnose(error, settings)) is not None:
                raise KafkaConfigError(blame)
        errors.clear()
        # A TLS listener closes a plaintext client's connection with no error librdkafka
        # reports as such: ask the listener itself.
        protocol = str(client_config(settings, {}).get("security.protocol", "plaintext"))
        if protocol.lower() in ("plaintext", "sasl_plaintext"):
            for address in _bootstrap(settings):
                if _speaks_tls(*address):
                    raise KafkaConfigError(
                        f"security.protocol{_source(settings)}: {protocol} is set (or the "
                        f"default), but {address[0]}:{address[1]} speaks TLS: set "
                        "security.protocol=SASL_SSL (or SSL) and ssl.ca.location")
    log.warning("the Kafka cluster at %s did not answer within %.0f s; starting all the same",
                settings.bootstrap_servers, wait_s)


def prepare_stage(settings: KafkaSettings, name: str, *, topics: bool = True) -> KafkaSettings:
    """A stage's start: its principal's settings, the cluster checked, and with `topics` its
    own topics there. Only those the principal reads or writes: with ACLs it sees no others."""
    settings = settings.as_principal(name)
    check_cluster(settings)
    if not topics:
        return settings
    wanted = topics_of(principal(name), settings.topic_prefix)
    ensure_topics(new_admin(settings), settings,
                  [spec for spec in topic_specs(settings) if spec.name in wanted])
    return settings


def _bootstrap(settings: KafkaSettings) -> list[tuple[str, int]]:
    servers = str(client_config(settings, {})["bootstrap.servers"])
    found = []
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit():
            found.append((host.strip("[]"), int(port)))
    return found


def _speaks_tls(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """Whether a TLS handshake succeeds there (no verification: only the protocol matters)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ssl.SSLError):
        return False
