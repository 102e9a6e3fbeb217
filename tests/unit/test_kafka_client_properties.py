"""The user's librdkafka properties (eventlog/client_properties.py) and their merge into every
client's configuration (eventlog/clients.py): the file format kcat's `-F` reads, the files
refused (readable by others, a key katagate owns, an unknown protocol, a missing CA), relative
paths taken from the file's folder, secrets never shown, and which file applies."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import pytest

from katagate.eventlog.client_properties import (
    OWNED_KEYS,
    SECURITY_PROTOCOLS,
    KafkaConfigError,
    is_secret,
    parse_properties,
    properties_file,
    read_properties,
    redacted,
)
from katagate.eventlog.clients import (
    client_config,
    new_producer,
    reader_config,
    reader_group,
    shown_config,
    user_properties,
)
from katagate.eventlog.settings import KafkaSettings


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return path


def settings(**values: object) -> KafkaSettings:
    """Settings that ignore this shell's KATAGATE_* variables: every file field explicit."""
    explicit: dict[str, object] = {"bootstrap_servers": "127.0.0.1:9", "topic_prefix": "t",
                                   "config_file": None, "config_dir": None, "principal": None}
    return KafkaSettings(**{**explicit, **values})  # type: ignore[arg-type]


# --- the file format -------------------------------------------------------------------------

def test_given_comments_blank_lines_and_spaces_when_parsed_then_only_the_pairs_remain():
    text = ("# katagate principal ingest\n"
            "\n"
            "   \n"
            "bootstrap.servers=127.0.0.1:9093\n"
            "  security.protocol =  SASL_SSL  \n"
            "\t# an indented comment\n"
            "sasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=a=b;c=d\n"
            "socket.keepalive.enable=\n")
    assert parse_properties(text, "f.properties") == {
        "bootstrap.servers": "127.0.0.1:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": "a=b;c=d",  # split at the first '=' only
        "socket.keepalive.enable": "",
    }


def test_given_an_empty_file_when_parsed_then_nothing_is_set():
    assert parse_properties("", "f") == {}
    assert parse_properties("# only a comment\n\n", "f") == {}


@pytest.mark.parametrize(("text", "line"), [
    ("bootstrap.servers=h:1\nsasl.username admin\n", 2),
    ("# comment\n\nsecurity.protocol=SSL\njust-a-word\n", 4),
    ("=value-without-a-key\n", 1),
])
def test_given_a_line_without_key_equals_value_when_parsed_then_it_is_refused_by_number(
        text, line):
    with pytest.raises(KafkaConfigError, match=rf"^my\.properties line {line}: expected key=value"):
        parse_properties(text, "my.properties")


@pytest.mark.parametrize("key", sorted(OWNED_KEYS))
def test_given_a_key_katagate_owns_when_parsed_then_it_is_refused_naming_the_key(key):
    text = f"bootstrap.servers=h:1\n  {key} = whatever\n"
    with pytest.raises(KafkaConfigError) as caught:
        parse_properties(text, "stage.properties")
    message = str(caught.value)
    assert message.startswith(f"stage.properties line 2: {key} is set by katagate")
    assert "cannot be overridden" in message


def test_the_owned_keys_include_what_exactly_once_depends_on():
    assert {"transactional.id", "group.id", "enable.idempotence", "isolation.level",
            "enable.auto.commit", "transaction.timeout.ms"} <= OWNED_KEYS


def test_given_an_unknown_security_protocol_when_parsed_then_the_value_and_the_choices_are_named():
    with pytest.raises(KafkaConfigError) as caught:
        parse_properties("security.protocol=SASL_TLS\n", "c.properties")
    message = str(caught.value)
    assert message.startswith("c.properties: security.protocol='SASL_TLS' is not one of")
    for allowed in SECURITY_PROTOCOLS:
        assert allowed in message


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "ssl", "SASL_PLAINTEXT", "SASL_SSL", "Sasl_Ssl"])
def test_given_a_known_security_protocol_in_any_case_when_parsed_then_it_is_kept(protocol):
    assert parse_properties(f"security.protocol={protocol}", "f") == {
        "security.protocol": protocol}


# --- reading a file --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620])
def test_given_a_file_others_may_read_or_write_when_read_then_it_is_refused_naming_file_and_mode(
        tmp_path, mode):
    path = private_file(tmp_path / "ingest.properties", "sasl.password=x\n", mode)
    with pytest.raises(KafkaConfigError) as caught:
        read_properties(path)
    message = str(caught.value)
    assert f"{path} has mode {mode:04o}" in message
    assert f"chmod 600 {path}" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_given_a_file_only_its_owner_may_read_when_read_then_its_pairs_are_returned(
        tmp_path, mode):
    path = private_file(tmp_path / "ingest.properties",
                        "# mine\nsasl.username=ingest\nsasl.password=x\n", mode)
    assert read_properties(path) == {"sasl.username": "ingest", "sasl.password": "x"}


def test_given_no_such_file_when_read_then_it_is_refused_naming_it(tmp_path):
    path = tmp_path / "absent.properties"
    with pytest.raises(KafkaConfigError, match=re.escape(f"{path}: no such file")):
        read_properties(path)


def test_given_a_private_file_with_a_bad_line_when_read_then_the_file_and_line_are_named(tmp_path):
    path = private_file(tmp_path / "x.properties", "a=1\nnot a pair\n")
    with pytest.raises(KafkaConfigError, match=re.escape(f"{path} line 2: expected key=value")):
        read_properties(path)


def test_given_a_ca_path_relative_to_the_file_when_read_then_it_is_taken_from_the_files_folder(
        tmp_path, monkeypatch):
    folder = tmp_path / "clients"
    (folder / "tls").mkdir(parents=True)
    (folder / "tls" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = private_file(folder / "ingest.properties",
                        "security.protocol=SASL_SSL\nssl.ca.location=tls/ca.pem\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the working folder, the CA would be missing

    properties = read_properties(path)

    assert properties["ssl.ca.location"] == str(folder / "tls" / "ca.pem")
    assert Path(properties["ssl.ca.location"]).is_file()


def test_given_an_absolute_ca_path_and_probe_when_read_then_both_are_kept(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    path = private_file(tmp_path / "sub" / "a.properties",
                        f"ssl.ca.location={ca}\nssl.certificate.location=probe\n")
    assert read_properties(path) == {"ssl.ca.location": str(ca),
                                     "ssl.certificate.location": "probe"}


def test_given_a_missing_ca_file_when_read_then_ssl_ca_location_is_named(tmp_path):
    path = private_file(tmp_path / "ingest.properties",
                        "security.protocol=SASL_SSL\nssl.ca.location=missing-ca.pem\n")
    with pytest.raises(KafkaConfigError) as caught:
        read_properties(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ssl.ca.location=missing-ca.pem")
    assert "no such readable file" in message


def test_given_a_missing_key_file_when_read_then_ssl_key_location_is_named(tmp_path):
    path = private_file(tmp_path / "ingest.properties", "ssl.key.location=/no/such/key.pem\n")
    with pytest.raises(KafkaConfigError, match=r"ssl\.key\.location=/no/such/key\.pem"):
        read_properties(path)


# --- secrets ---------------------------------------------------------------------------------

def test_given_credentials_when_redacted_then_every_secret_value_is_replaced_and_the_rest_kept():
    config = {"sasl.username": "ingest", "sasl.password": "pw-1", "ssl.key.password": "pw-2",
              "ssl.keystore.password": "pw-3", "sasl.oauthbearer.client.secret": "pw-4",
              "ssl.key.pem": "-----BEGIN PRIVATE KEY-----", "security.protocol": "SASL_SSL",
              "bootstrap.servers": "h:1"}
    shown = redacted(config)
    assert shown == {**config, "sasl.password": "[redacted]", "ssl.key.password": "[redacted]",
                     "ssl.keystore.password": "[redacted]",
                     "sasl.oauthbearer.client.secret": "[redacted]",
                     "ssl.key.pem": "[redacted]"}
    assert config["sasl.password"] == "pw-1"  # the original is left alone


@pytest.mark.parametrize(("key", "secret"), [
    ("sasl.password", True), ("ssl.key.password", True), ("some.future.password", True),
    ("sasl.oauthbearer.client.secret", True), ("sasl.username", False),
    ("ssl.ca.location", False), ("bootstrap.servers", False),
    # librdkafka 2.16's JWT-bearer assertion: its private key and the key's passphrase
    ("sasl.oauthbearer.assertion.private.key.pem", True),
    ("sasl.oauthbearer.assertion.private.key.passphrase", True),
    ("sasl.oauthbearer.extensions", True), ("SASL.PASSWORD", True),
    ("sasl.oauthbearer.token.endpoint.url", False), ("ssl.ca.pem", False),
    ("ssl.certificate.pem", False),
])
def test_which_keys_are_secret(key, secret):
    assert is_secret(key) is secret


def test_given_a_file_with_a_password_when_the_configuration_is_shown_then_the_password_is_absent(
        tmp_path):
    password = secrets.token_urlsafe(24)
    key_password = secrets.token_urlsafe(24)
    path = private_file(tmp_path / "ingest.properties",
                        "security.protocol=SASL_SSL\nsasl.username=ingest\n"
                        f"sasl.password={password}\nssl.key.password={key_password}\n")

    shown = shown_config(settings(config_file=path), {"client.id": "katagate-x"})

    assert shown["sasl.password"] == "[redacted]"
    assert shown["ssl.key.password"] == "[redacted]"
    assert shown["sasl.username"] == "ingest"  # the file was read
    everything = repr(shown)
    assert password not in everything
    assert key_password not in everything


# --- which file applies ----------------------------------------------------------------------

def test_given_a_folder_and_a_principal_then_the_principals_own_file_applies(tmp_path):
    assert properties_file(None, tmp_path, "ingest") == tmp_path / "ingest.properties"
    # The folder wins over one named file: it holds each stage's own credentials.
    assert properties_file(tmp_path / "one.properties", tmp_path, "decider") == (
        tmp_path / "decider.properties")


def test_given_one_file_then_it_applies_to_every_principal(tmp_path):
    one = tmp_path / "one.properties"
    assert properties_file(one, None, "ingest") == one
    assert properties_file(one, None, None) == one
    assert properties_file(one, tmp_path, None) == one  # no principal: the one file


def test_given_neither_then_no_file_applies():
    assert properties_file(None, None, "ingest") is None
    assert properties_file(None, None, None) is None


def test_given_a_folder_without_a_principal_then_it_is_refused_naming_the_variables(tmp_path):
    with pytest.raises(KafkaConfigError) as caught:
        properties_file(None, tmp_path, None)
    message = str(caught.value)
    assert f"KATAGATE_KAFKA_CONFIG_DIR={tmp_path} needs a principal" in message
    assert "KATAGATE_KAFKA_CONFIG" in message


def test_given_settings_with_a_folder_when_the_principal_changes_then_its_file_is_read(tmp_path):
    private_file(tmp_path / "ingest.properties", "sasl.username=ingest\n")
    private_file(tmp_path / "decider.properties", "sasl.username=decider\n")
    base = settings(config_dir=tmp_path)
    assert user_properties(base.as_principal("ingest")) == {"sasl.username": "ingest"}
    assert user_properties(base.as_principal("decider")) == {"sasl.username": "decider"}
    with pytest.raises(KafkaConfigError, match="needs a principal"):
        user_properties(base)


def test_given_settings_without_a_file_then_the_user_sets_nothing():
    assert user_properties(settings()) == {}


def test_given_settings_from_the_environment_then_the_variables_name_file_folder_and_principal(
        tmp_path, monkeypatch):
    monkeypatch.setenv("KATAGATE_KAFKA_CONFIG", str(tmp_path / "one.properties"))
    monkeypatch.setenv("KATAGATE_KAFKA_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("KATAGATE_KAFKA_PRINCIPAL", "scanner")
    read = KafkaSettings()
    assert read.config_file == tmp_path / "one.properties"
    assert read.config_dir == tmp_path
    assert read.principal == "scanner"
    assert read.as_principal("audit").principal == "audit"
    assert read.principal == "scanner"  # a copy: settings are frozen


# --- the merge -------------------------------------------------------------------------------

def test_given_no_file_when_merged_then_katagates_settings_and_the_bootstrap_apply():
    config = client_config(settings(bootstrap_servers="kafka:9092"),
                           {"client.id": "katagate-x", "isolation.level": "read_committed"})
    assert config["bootstrap.servers"] == "kafka:9092"
    assert config["client.id"] == "katagate-x"
    assert config["isolation.level"] == "read_committed"


def test_given_a_file_when_merged_then_the_users_values_win_over_katagates(tmp_path):
    path = private_file(tmp_path / "ingest.properties",
                        "bootstrap.servers=broker-a:9093,broker-b:9093\n"
                        "client.id=mine\nlog_level=7\nsecurity.protocol=SASL_SSL\n")

    config = client_config(settings(bootstrap_servers="127.0.0.1:9092", config_file=path),
                           {"client.id": "katagate-x", "isolation.level": "read_committed",
                            "log_level": 0})

    assert config["bootstrap.servers"] == "broker-a:9093,broker-b:9093"
    assert config["client.id"] == "mine"
    assert config["log_level"] == "7"
    assert config["security.protocol"] == "SASL_SSL"
    # What the user does not set stays katagate's.
    assert config["isolation.level"] == "read_committed"


def test_given_a_file_with_a_value_librdkafka_refuses_when_a_client_is_built_then_the_key_is_named(
        tmp_path):
    path = private_file(tmp_path / "p.properties", "socket.timeout.ms=soon\n")
    with pytest.raises(KafkaConfigError, match=r"socket\.timeout\.ms"):
        new_producer(settings(config_file=path), {})


def test_a_readers_group_is_inside_its_principals_namespace_and_fresh_each_time():
    ingest = settings(topic_prefix="gw").as_principal("ingest")
    first, second = reader_group(ingest, "control"), reader_group(ingest, "control")
    assert re.fullmatch(r"gw\.ingest\.control-[0-9a-f]{32}", first)
    assert first != second
    config = reader_config(ingest, "raw-reader", **{"fetch.max.bytes": 1})
    assert config["group.id"].startswith("gw.ingest.raw-reader-")
    assert config["isolation.level"] == "read_committed"
    assert config["enable.auto.commit"] is False
    assert config["fetch.max.bytes"] == 1
