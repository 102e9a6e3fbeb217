"""The user's librdkafka properties: a `key=value` file, as kcat's `-F` reads, named by
`KATAGATE_KAFKA_CONFIG` (one file for every stage) or found as `<principal>.properties` in
`KATAGATE_KAFKA_CONFIG_DIR` (one file, so one principal, per stage).

A file holds credentials, so one that its group or others may read is refused. Keys katagate
sets for correctness (exactly-once needs its transactional ids, isolation and offset handling)
cannot be overridden: a file that tries is refused, naming the key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from katagate.eventlog.errors import KatagateError

# Values never logged or printed: credentials, whatever the mechanism.
SECRET_KEYS = frozenset({
    "sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem",
    "ssl_key.pem", "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config",
    # A Java-style client file carries the password inside the JAAS line.
    "sasl.jaas.config",
})
# What exactly-once and the stages' own reading depend on: set by katagate, never by a file.
OWNED_KEYS = frozenset({
    "transactional.id", "group.id", "group.instance.id", "enable.idempotence",
    "isolation.level", "enable.auto.commit", "enable.auto.offset.store",
    "enable.partition.eof", "auto.offset.reset", "transaction.timeout.ms",
})
SECURITY_PROTOCOLS = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")
FILE_KEYS = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location",
             "ssl.keystore.location", "ssl.crl.location", "sasl.kerberos.keytab")


class KafkaConfigError(KatagateError):
    """A Kafka client setting is wrong; the message names the setting and where it came from."""


# Words in a key that mark its value secret, for keys a newer librdkafka adds
# (`sasl.oauthbearer.assertion.private.key.passphrase`, `....private.key.pem`): too much
# redacted costs nothing, too little prints a private key.
SECRET_WORDS = ("password", "secret", "passphrase", "private", "jaas", "credential", "token")
# Named for a token but not one: where a token is asked for.
NOT_SECRET = frozenset({"sasl.oauthbearer.token.endpoint.url"})


def is_secret(key: str) -> bool:
    key = key.lower()
    if key in SECRET_KEYS or key.endswith("key.pem") or key == "sasl.oauthbearer.extensions":
        return True
    return key not in NOT_SECRET and any(word in key for word in SECRET_WORDS)


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration as it may be shown: every secret value replaced."""
    return {key: ("[redacted]" if is_secret(key) else value) for key, value in config.items()}


def parse_properties(text: str, source: str) -> dict[str, str]:
    """`key=value` lines; `#` starts a comment line; blank lines are skipped."""
    properties: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, equals, value = stripped.partition("=")
        key = key.strip()
        if not equals or not key:
            raise KafkaConfigError(f"{source} line {number}: expected key=value")
        if key in OWNED_KEYS:
            raise KafkaConfigError(
                f"{source} line {number}: {key} is set by katagate (its exactly-once "
                "processing depends on it) and cannot be overridden")
        properties[key] = value.strip()
    protocol = properties.get("security.protocol")
    if protocol is not None and protocol.lower() not in SECURITY_PROTOCOLS:
        raise KafkaConfigError(
            f"{source}: security.protocol={protocol!r} is not one of "
            f"{', '.join(SECURITY_PROTOCOLS)}")
    return properties


def read_properties(path: Path) -> dict[str, str]:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KafkaConfigError(f"Kafka client properties {path}: no such file") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise KafkaConfigError(
            f"Kafka client properties {path} has mode {mode:04o}: it may hold credentials, so "
            f"it must be readable by its owner only (chmod 600 {path})")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KafkaConfigError(f"Kafka client properties {path}: {exc.strerror}") from exc
    properties = parse_properties(text, str(path))
    for key in FILE_KEYS:
        named = properties.get(key)
        if named and named != "probe" and not os.access(_relative_to(path, named), os.R_OK):
            raise KafkaConfigError(f"{path}: {key}={named}: no such readable file")
        if named and named != "probe":
            properties[key] = str(_relative_to(path, named))
    return properties


def _relative_to(properties_file: Path, named: str) -> Path:
    """A relative path in a properties file is taken from the file's own folder, so a folder
    of files and certificates can move as one."""
    candidate = Path(named)
    return candidate if candidate.is_absolute() else properties_file.parent / candidate


def properties_file(config_file: Path | None, config_dir: Path | None,
                    principal: str | None) -> Path | None:
    """The file that applies: the principal's own in the folder, else the one named file."""
    if config_dir is not None:
        if principal is None:
            if config_file is not None:
                return config_file
            raise KafkaConfigError(
                f"KATAGATE_KAFKA_CONFIG_DIR={config_dir} needs a principal, and this command "
                "names none; set KATAGATE_KAFKA_CONFIG to one file instead")
        return config_dir / f"{principal}.properties"
    return config_file
