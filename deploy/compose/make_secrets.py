"""The compose deployment's secrets (deploy/compose/compose.yaml `secrets:`), made once into one
folder, by default deploy/compose/secrets/ (ignored by git and by the image build):

    ca.pem                        the CA of every certificate below               0444
    ca-key.pem                    not mounted: keep it offline afterwards         yours, 0400
    kafka-N.p12                   node N's key store: CN=broker, SAN kafka-N      1000, 0400
    kafka-N-store.properties      its password (password=...)                     1000, 0400
    admin-tls.pem, -key.pem       kafka-users: the admin's certificate, CN=admin  10001, 0400
    kafka-<principal>.properties  a stage's SCRAM user and password (librdkafka)  10001, 0400
    projector-tokens.json         the projector: its read tokens' digests         10001, 0400
    projector-token               the console: the token it sends                 10001, 0400

Compose bind-mounts a secret file as it is on the host, owner and mode included, so each file
belongs to the user that reads it: 1000 in apache/kafka, 10001 in deploy/Dockerfile. Run as
root (the second form below), this script sets the owners itself; otherwise it prints the
`chown` to run. Existing files are kept: a second run only fills gaps (a new principal).

    python deploy/compose/make_secrets.py                     # needs katagate installed
    docker run --rm --user 0 --entrypoint python -v "$PWD/deploy/compose:/compose" \\
        katagate:latest /compose/make_secrets.py /compose/secrets
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from katagate.eventlog.principals import PRINCIPALS
from katagate.projector.guard import token_file

KAFKA_UID = 1000  # appuser in apache/kafka
KATAGATE_UID = 10001  # deploy/Dockerfile
NODES = ("kafka-1", "kafka-2", "kafka-3")
VALID_DAYS = 825
# Where the stages find the CA: compose mounts the secret kafka-ca there.
CA_IN_CONTAINER = "/run/secrets/kafka-ca.pem"
CONSOLE_TOKEN_NAME = "console"  # noqa: S105 - the token's name, not a token


def _name(common_name: str) -> x509.Name:
    # Subject "CN=<name>,O=katagate": the brokers' rule RULE:^CN=([^,]+),.*$/$1/ maps it to
    # User:<name>; without the O there is no comma and the rule would not match.
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "katagate"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, mode: int = 0o400) -> None:
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _ca(folder: Path, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = folder / "ca.pem", folder / "ca-key.pem"
    if cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SystemExit(f"{key_path}: not the EC key this script makes")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "katagate"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "katagate compose CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_path, _pem_key(key))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o444)
    return cert, key


def _leaf(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], common_name: str,
          dns_names: list[str], now: dt.datetime, *, server: bool,
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:  # a node is a server to clients and a client to the other nodes
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (x509.CertificateBuilder().subject_name(_name(common_name))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def client_properties(principal: str, password: str) -> str:
    """A stage's librdkafka properties; bootstrap.servers comes from KAFKA_BOOTSTRAP_SERVERS."""
    return "\n".join([
        f"# katagate principal {principal} on the compose cluster (make_secrets.py)",
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        f"sasl.username={principal}",
        f"sasl.password={password}",
        f"ssl.ca.location={CA_IN_CONTAINER}",
    ]) + "\n"


def make(folder: Path, nodes: tuple[str, ...] = NODES,
         now: dt.datetime | None = None) -> dict[Path, int | None]:
    """Every missing file made; returns each file and the uid that must own it (None: any)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.UTC)
    owners: dict[Path, int | None] = {}

    def once(name: str, owner: int | None, make_it: Callable[[Path], None]) -> Path:
        path = folder / name
        if not path.exists():
            make_it(path)
        owners[path] = owner
        return path

    ca = _ca(folder, now)
    owners[folder / "ca.pem"] = None
    owners[folder / "ca-key.pem"] = None
    pem = serialization.Encoding.PEM
    for number, host in enumerate(nodes, start=1):
        def node_store(path: Path, host: str = host, number: int = number) -> None:
            password = secrets.token_urlsafe(24)
            cert, key = _leaf(ca, "broker", [host], now, server=True)
            _write(folder / f"kafka-{number}-store.properties",
                   f"password={password}\n".encode("ascii"))
            _write(path, pkcs12.serialize_key_and_certificates(
                b"broker", key, cert, [ca[0]],
                serialization.BestAvailableEncryption(password.encode("ascii"))))
        once(f"kafka-{number}.p12", KAFKA_UID, node_store)
        owners[folder / f"kafka-{number}-store.properties"] = KAFKA_UID

    def admin_tls(path: Path) -> None:
        cert, key = _leaf(ca, "admin", [], now, server=False)
        _write(folder / "admin-tls-key.pem", _pem_key(key))
        _write(path, cert.public_bytes(pem))
    once("admin-tls.pem", KATAGATE_UID, admin_tls)
    owners[folder / "admin-tls-key.pem"] = KATAGATE_UID

    for principal in PRINCIPALS:
        once(f"kafka-{principal}.properties", KATAGATE_UID, lambda path, p=principal: _write(
            path, client_properties(p, secrets.token_urlsafe(32)).encode("utf-8")))

    # The projector keeps the digests; the console sends the token (access/tokens.py).
    tokens = folder / "projector-tokens.json"
    holder = folder / "projector-token"
    token_file(tokens).ensure_in_file(CONSOLE_TOKEN_NAME, holder, now.isoformat())
    for path in (tokens, holder):
        os.chmod(path, 0o400)
        owners[path] = KATAGATE_UID
    return owners


def set_owners(owners: dict[Path, int | None]) -> list[str]:
    """Owners set when root; else the commands that would set them."""
    commands = []
    for uid in sorted({u for u in owners.values() if u is not None}):
        paths = sorted(str(p) for p, u in owners.items() if u == uid)
        if os.geteuid() == 0:
            for path in paths:
                os.chown(path, uid, uid)
        else:
            commands.append(f"sudo chown {uid}:{uid} " + " ".join(paths))
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path,
                        default=Path(__file__).resolve().parent / "secrets")
    parser.add_argument("--nodes", default=",".join(NODES),
                        help="the Kafka nodes' host names, in node id order")
    args = parser.parse_args(argv)
    owners = make(args.folder, tuple(args.nodes.split(",")))
    commands = set_owners(owners)
    print(f"{len(owners)} secret files in {args.folder}")
    if commands:
        print("compose mounts them with their host owner; as root, run:", *commands, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
