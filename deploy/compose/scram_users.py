"""The compose cluster's SCRAM-SHA-512 users, one per katagate principal (the one-shot
`kafka-users` in compose.yaml, in the katagate image): each user's password is the one in its
properties file (`/run/secrets/kafka-<principal>.properties`, made by make_secrets.py).

It speaks to the nodes' mutual-TLS listener with the admin's certificate (User:admin, a super
user), so it needs no SCRAM user to exist; the passwords go through the admin API, never a
command line or an environment. It waits for all nodes, upserts every user (run it again after
changing a password), then waits until admin can log in with SCRAM on every node, so that the
next one-shot (topics and ACLs, as admin) finds its credential everywhere.

    python scram_users.py --internal kafka-1:9094,kafka-2:9094,kafka-3:9094 \\
        --clients kafka-1:9092,kafka-2:9092,kafka-3:9092
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from katagate.eventlog.client_properties import parse_properties
from katagate.eventlog.principals import PRINCIPALS

SECRETS = Path("/run/secrets")
ITERATIONS = 8192


def credentials(folder: Path) -> dict[str, dict[str, str]]:
    """Each principal's properties, checked to name that principal and hold a password."""
    found = {}
    for name in PRINCIPALS:
        path = folder / f"kafka-{name}.properties"
        properties = parse_properties(path.read_text(encoding="utf-8"), str(path))
        if properties.get("sasl.username") != name or not properties.get("sasl.password"):
            raise SystemExit(f"{path}: needs sasl.username={name} and a sasl.password")
        found[name] = properties
    return found


# librdkafka's last error (a refused connection while the nodes start, a TLS failure): quiet
# while waiting, named if the wait fails.
ERRORS: list[str] = []


def _quiet(own: dict[str, Any]) -> dict[str, Any]:
    return {**own, "log_level": 0, "error_cb": lambda error: ERRORS.append(error.str())}


def tls_config(bootstrap: str, folder: Path) -> dict[str, Any]:
    """The admin's certificate on the nodes' mutual-TLS listener."""
    return _quiet({"bootstrap.servers": bootstrap, "security.protocol": "ssl",
                   "ssl.ca.location": str(folder / "kafka-ca.pem"),
                   "ssl.certificate.location": str(folder / "kafka-admin-tls.pem"),
                   "ssl.key.location": str(folder / "kafka-admin-tls-key.pem")})


def scram_config(bootstrap: str, properties: dict[str, str]) -> dict[str, Any]:
    return _quiet({**properties, "bootstrap.servers": bootstrap})


def _until(what: str, deadline: float, attempt: Any) -> Any:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return attempt()
        except Exception as exc:
            last = exc
            time.sleep(2)
    raise SystemExit(f"kafka-users: {what} did not succeed in time: {last}; librdkafka's last "
                     f"error: {ERRORS[-1] if ERRORS else 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--internal", required=True, help="the nodes' mutual-TLS listeners")
    parser.add_argument("--clients", required=True, help="the nodes' SASL_SSL listeners")
    parser.add_argument("--secrets", type=Path, default=SECRETS)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    users = credentials(args.secrets)
    deadline = time.monotonic() + args.timeout
    nodes = args.internal.split(",")

    admin = AdminClient(tls_config(args.internal, args.secrets))

    def all_nodes() -> None:
        brokers = admin.list_topics(timeout=10).brokers
        if len(brokers) < len(nodes):
            raise RuntimeError(f"{len(brokers)} of {len(nodes)} nodes")
    _until("waiting for the cluster", deadline, all_nodes)

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS)

    def upsert() -> None:
        futures = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(name, info, p["sasl.password"].encode("utf-8"))
             for name, p in users.items()], request_timeout=30)
        for future in futures.values():
            future.result()
    _until("creating the SCRAM users", deadline, upsert)
    print(f"kafka-users: {len(users)} SCRAM-SHA-512 users set: {', '.join(users)}", flush=True)

    for node in args.clients.split(","):
        client = AdminClient(scram_config(node, users["admin"]))
        _until(f"admin's SCRAM login on {node}", deadline,
               lambda client=client: client.list_topics(timeout=10))
    print("kafka-users: admin logs in with SCRAM on every node", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
