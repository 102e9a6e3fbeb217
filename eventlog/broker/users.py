"""A secure local broker's SCRAM users, one per principal of eventlog/principals.py, and the
librdkafka properties file of each (mode 0600, in a folder of mode 0700): what
`KATAGATE_KAFKA_CONFIG_DIR` names. Passwords are random, made once and kept in those files;
they reach the broker through the admin API over mutual TLS, never a command line.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from katagate.eventlog.broker.tls import TlsFiles
from katagate.eventlog.client_properties import parse_properties
from katagate.eventlog.errors import BrokerError
from katagate.eventlog.principals import PRINCIPALS

SCRAM_ITERATIONS = 8192


def broker_client_config(tls: TlsFiles, internal_port: int) -> dict[str, Any]:
    """The brokers' own identity (User:broker, a super user) on the mutual-TLS listener."""
    return {"bootstrap.servers": f"127.0.0.1:{internal_port}", "security.protocol": "ssl",
            "ssl.ca.location": str(tls.ca_cert),
            "ssl.certificate.location": str(tls.broker_cert),
            "ssl.key.location": str(tls.broker_key), "log_level": 0}


def client_properties(name: str, password: str, bootstrap: str, tls: TlsFiles) -> str:
    return "\n".join([
        f"# katagate principal {name}: librdkafka properties (kcat -F reads them too)",
        f"bootstrap.servers={bootstrap}",
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        f"sasl.username={name}",
        f"sasl.password={password}",
        f"ssl.ca.location={tls.ca_cert}",
    ]) + "\n"


def _password_in(path: Path) -> str | None:
    if not path.exists():
        return None
    return parse_properties(path.read_text(encoding="utf-8"), str(path)).get("sasl.password")


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    temporary.replace(path)


def ensure_users(tls: TlsFiles, internal_port: int, bootstrap: str, folder: Path,
                 timeout_s: float = 60.0) -> Path:
    """Every principal's SCRAM credential upserted (its kept password, or a new one) and its
    properties file written; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    passwords = {name: _password_in(folder / f"{name}.properties") or secrets.token_urlsafe(32)
                 for name in PRINCIPALS}
    admin = AdminClient(broker_client_config(tls, internal_port))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    futures = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(name, info, password.encode("utf-8"))
         for name, password in passwords.items()], request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result()
        except Exception as exc:
            raise BrokerError(f"creating the SCRAM user {name} failed: {exc}") from exc
    for name, password in passwords.items():
        _write_private(folder / f"{name}.properties",
                       client_properties(name, password, bootstrap, tls))
    return folder
