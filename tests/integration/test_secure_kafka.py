"""Given katagate's own secure broker (SASL_SSL, SCRAM-SHA-512, ACLs enforced) with the
principals' grants applied: a client set up wrong is stopped naming the setting, each principal
can do what its stage does and is refused, with Kafka's own authorization error, what another
stage does; `katagate acls apply` makes the grants exactly true; the commands print what an
operator needs and never a password.

Every refusal has its positive twin (the same call, by the principal that may): a refusal
cannot pass because nothing works at all. One broker for the module."""

from __future__ import annotations

import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from katagate.eventlog.broker.tls import ensure_tls
from katagate.eventlog.client_properties import KafkaConfigError
from katagate.eventlog.clients import new_admin, new_consumer, new_reader
from katagate.eventlog.errors import TopicError
from katagate.eventlog.preflight import check_cluster, prepare_stage
from katagate.eventlog.principals import CONTROL_WRITER, PRINCIPALS, Grant, grants
from tests.secure_kafka import (
    REQUEST_TIMEOUT_S,
    SecureKafka,
    katagate,
    prepare_namespace,
    private_copy,
    secure_broker,
)
from tests.secure_kafka_probes import committed_one, fetched, joined, produced_plainly

pytestmark = pytest.mark.kafka

TOPIC_DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED
TID_DENIED = KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
GROUP_DENIED = KafkaError.GROUP_AUTHORIZATION_FAILED


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    with secure_broker(folder / "broker") as (broker, status):
        yield prepare_namespace(status, broker.data_dir)


# --- a client set up wrong: one error naming the setting -------------------------------------

def test_given_each_principals_own_file_then_the_cluster_accepts_it(secure, caplog):
    for name in PRINCIPALS:
        check_cluster(secure.settings(name), wait_s=REQUEST_TIMEOUT_S)  # no error
    # Nor the silence check_cluster lets pass: each one was answered.
    assert not [r for r in caplog.records if "did not answer" in r.getMessage()]


def test_given_a_plaintext_client_then_security_protocol_is_named(secure):
    # No properties file: librdkafka's default, plaintext, against the SASL_SSL listener.
    settings = secure.settings("ingest", config_dir=None)

    with pytest.raises(KafkaConfigError) as caught:
        check_cluster(settings, wait_s=REQUEST_TIMEOUT_S)

    message = str(caught.value)
    assert message.startswith("security.protocol")
    assert f"{secure.bootstrap} speaks TLS" in message
    assert "security.protocol=SASL_SSL" in message


def test_given_a_wrong_password_then_sasl_username_and_password_are_named(secure, tmp_path):
    path = private_copy(secure.clients_dir / "ingest.properties", tmp_path / "ingest.properties",
                        replace={"sasl.password": "not-the-password"})

    with pytest.raises(KafkaConfigError) as caught:
        check_cluster(secure.settings("ingest", config_dir=None, config_file=path),
                      wait_s=REQUEST_TIMEOUT_S)

    message = str(caught.value)
    assert message.startswith(f"sasl.username / sasl.password in {path}")
    assert "refused the credentials of principal ingest" in message
    assert "not-the-password" not in message


@pytest.mark.parametrize("ca", ["none", "another-ca"])
def test_given_no_ca_or_another_ca_then_ssl_ca_location_is_named(secure, tmp_path, ca):
    source = secure.clients_dir / "ingest.properties"
    if ca == "none":
        path = private_copy(source, tmp_path / "ingest.properties", drop=("ssl.ca.location",))
    else:
        other = ensure_tls(tmp_path / "other-tls")  # a CA of its own, not the broker's
        path = private_copy(source, tmp_path / "ingest.properties",
                            replace={"ssl.ca.location": str(other.ca_cert)})

    with pytest.raises(KafkaConfigError) as caught:
        check_cluster(secure.settings("ingest", config_dir=None, config_file=path),
                      wait_s=REQUEST_TIMEOUT_S)

    message = str(caught.value)
    assert message.startswith(f"ssl.ca.location in {path}")
    assert "certificate verify failed" in message


# --- writes: each principal to its own topics, with its own transactional ids, if any -------

@pytest.mark.parametrize(("who", "tid", "topic", "expected"), [
    # ingest writes without a transaction (ingest/writer.py): it holds no transactional id
    ("ingest", "ingest-test", "raw", TID_DENIED),
    ("scanner", "scanner-test", "raw", TOPIC_DENIED),
    # the control topic: the scanner (its lifecycle) and admin may
    ("scanner", "scanner-lifecycle", "control", None),
    ("admin", CONTROL_WRITER, "control", None),
    # the audit topic is audit's alone
    ("audit", "audit-checkpointer", "audit", None),
    ("decider", "decider-test", "audit", TOPIC_DENIED),
    # another stage's transactional id: refused before any write
    ("ingest", "decider-test", "raw", TID_DENIED),
    ("scanner", CONTROL_WRITER, "control", TID_DENIED),
    # the projector produces nothing, under no id
    ("projector", "projector-test", "mail", TID_DENIED),
    ("projector", "ingest-test", "raw", TID_DENIED),
    ("projector", CONTROL_WRITER, "control", TID_DENIED),
])
def test_a_principal_writes_its_topics_under_its_ids_and_nothing_else(
        secure, who, tid, topic, expected):
    outcome = committed_one(secure.settings(who), f"{secure.prefix}-{tid}",
                            getattr(secure.names, topic))
    assert outcome == expected, (
        f"{who} writing {topic} as {tid}: {KafkaError(outcome) if outcome else 'committed'}")


def test_given_the_ids_the_stages_ask_for_then_their_writes_commit(secure):
    """The ids as the stage code makes them (Principal.transactional_id)."""
    for who, name, topic in [("decider", "decider-instance-1", "quarantine"),
                             ("decider", "admission", "quarantine"),
                             ("console", "console-quarantine", "mail")]:
        tid = PRINCIPALS[who].transactional_id(secure.prefix, name)
        assert committed_one(secure.settings(who), tid, getattr(secure.names, topic)) is None, (
            who, name)


@pytest.mark.parametrize(("topic", "expected"), [
    ("raw", None), ("mail", None),
    ("control", TOPIC_DENIED), ("quarantine", TOPIC_DENIED), ("audit", TOPIC_DENIED),
])
def test_ingest_writes_idempotently_its_topics_and_nothing_else(secure, topic, expected):
    outcome = produced_plainly(secure.settings("ingest"), getattr(secure.names, topic),
                               idempotent=True)
    assert outcome == expected, f"ingest writing {topic}: {outcome}"


def test_the_projector_may_produce_nothing_even_without_a_transaction(secure):
    for kind in ("mail", "quarantine", "control"):
        assert produced_plainly(secure.settings("projector"), getattr(secure.names, kind)) == (
            TOPIC_DENIED), kind
    # The same call by a principal that writes mail: acknowledged.
    assert produced_plainly(secure.settings("ingest"), secure.names.mail) is None


# --- reads: each principal in its own consumer groups ----------------------------------------

@pytest.mark.parametrize(("who", "group", "topic", "expected"), [
    ("ingest", "ingest", "control", None),
    ("ingest", "decider", "control", GROUP_DENIED),
    ("decider", "decider", "mail", None),
    ("scanner", "decider", "mail", GROUP_DENIED),
    ("projector", "admission", "mail", GROUP_DENIED),
    ("decider", "scanner", "mail", GROUP_DENIED),
])
def test_a_principal_joins_its_own_groups_and_no_other_stages(secure, who, group, topic, expected):
    outcome = joined(secure.settings(who), f"{secure.prefix}.{group}",
                     getattr(secure.names, topic))
    assert outcome == expected, f"{who} in group {group}: {outcome}"


@pytest.mark.parametrize(("who", "topic", "expected"), [
    ("ingest", "control", None),
    ("ingest", "quarantine_usage", None),  # the usage, for on_unavailable = tempfail
    # never the ledger: Backup copies' locations and sha256, notices' texts
    ("ingest", "quarantine", TOPIC_DENIED),
    ("ingest", "mail", TOPIC_DENIED),  # it writes the mail events, never reads them
    ("decider", "mail", None),
    ("decider", "audit", TOPIC_DENIED),
    # a Backup copy's view and download (admin, a super user, reads it anyway)
    ("console", "backup", None),
    ("projector", "backup", TOPIC_DENIED),  # it lists the ledger, never reads the copies
])
def test_a_principal_reads_only_the_topics_it_needs(secure, who, topic, expected):
    outcome = fetched(secure.settings(who), PRINCIPALS[who].group(secure.prefix, who),
                      getattr(secure.names, topic))
    assert outcome == expected, f"{who} reading {topic}: {outcome}"


def test_the_decider_reads_what_ingest_wrote_in_its_own_group_and_commits(secure):
    value = f"mail-{uuid.uuid4().hex}".encode()
    assert produced_plainly(secure.settings("ingest"), secure.names.mail, value,
                            idempotent=True) is None

    group = PRINCIPALS["decider"].group(secure.prefix, "decider")
    consumer = new_consumer(secure.settings("decider"), {
        "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "isolation.level": "read_committed"})
    try:
        consumer.subscribe([secure.names.mail])
        deadline = time.monotonic() + 20
        found = None
        while found is None and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.2):
                assert message.error() is None, message.error()
                if message.value() == value:
                    found = message
        assert found is not None, "the decider never read the record ingest committed"
        committed = consumer.commit(message=found, asynchronous=False)
        assert committed is not None
        [position] = committed
        assert position.error is None
        offset = found.offset()
        assert offset is not None
        assert position.offset == offset + 1
    finally:
        consumer.close()


def test_a_reader_that_assigns_works_under_its_principals_grant(secure):
    """Readers carry a random group id inside their principal's prefix (eventlog/clients.py):
    with ACLs on, fetching as the projector must work all the same."""
    value = f"for-the-projector-{uuid.uuid4().hex}".encode()
    assert produced_plainly(secure.settings("ingest"), secure.names.mail, value,
                            idempotent=True) is None
    reader = new_reader(secure.settings("projector"), "test", **{"auto.offset.reset": "earliest"})
    try:
        metadata = reader.list_topics(secure.names.mail, timeout=REQUEST_TIMEOUT_S)
        reader.assign([TopicPartition(secure.names.mail, p, 0)
                       for p in metadata.topics[secure.names.mail].partitions])
        deadline = time.monotonic() + 20
        values: list[bytes | None] = []
        while value not in values and time.monotonic() < deadline:
            for message in reader.consume(100, 0.2):
                assert message.error() is None, message.error()
                values.append(message.value())
        assert value in values
    finally:
        reader.close()


# --- a stage's start under least privilege ---------------------------------------------------

@pytest.mark.parametrize("name", ["ingest", "scanner", "decider", "audit"])
def test_a_stage_starts_on_its_own_topics_under_its_grants(secure, name):
    settings = prepare_stage(secure.settings(), name)
    assert settings.principal == name


def test_a_stage_on_a_namespace_without_topics_is_told_to_ask_the_admin(secure):
    fresh = secure.settings(topic_prefix=f"none{uuid.uuid4().hex[:10]}")
    with pytest.raises(TopicError, match="katagate topics create"):
        prepare_stage(fresh, "ingest")


# --- katagate acls apply ---------------------------------------------------------------------

def acls_apply(secure: SecureKafka, *flags: str) -> list[str]:
    result = katagate("acls", "apply", *flags, env=secure.env())
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_after_apply_a_dry_run_has_nothing_to_grant_or_remove(secure):
    lines = acls_apply(secure, "--dry-run")
    assert lines[-1] == (f"0 to grant, 0 to remove, {len(grants(secure.prefix))} in force "
                         "already (dry run: nothing changed)")


def test_a_stray_grant_is_removed_and_a_foreign_deny_left_alone(secure):
    admin = new_admin(secure.settings("admin"))
    stray = AclBinding(ResourceType.TOPIC, secure.names.mail, ResourcePatternType.LITERAL,
                       "User:projector", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    deny = AclBinding(ResourceType.TOPIC, secure.names.deadletter, ResourcePatternType.LITERAL,
                      "User:projector", "*", AclOperation.READ, AclPermissionType.DENY)
    for future in admin.create_acls([stray, deny], request_timeout=REQUEST_TIMEOUT_S).values():
        future.result()
    try:
        # The stray grant is in force: the projector could now write mail events.
        assert eventually(lambda: produced_plainly(secure.settings("projector"),
                                                   secure.names.mail) is None)

        extra = Grant("projector", "topic", secure.names.mail, "literal", "WRITE").line()
        planned = acls_apply(secure, "--dry-run")
        assert f"would remove {extra}" in planned
        assert any(line.startswith("left alone (not katagate's kind of grant)")
                   and "DENY" in line for line in planned)
        assert planned[-1].startswith("0 to grant, 1 to remove, ")

        applied = acls_apply(secure)
        assert [line for line in applied if line.startswith("removed")] == [
            f"removed     {extra}"]
        assert applied[-1].startswith("0 to grant, 1 to remove, ")

        assert eventually(lambda: produced_plainly(secure.settings("projector"),
                                                   secure.names.mail) == TOPIC_DENIED)
        assert acls_apply(secure, "--dry-run")[-1].startswith("0 to grant, 0 to remove, ")
        left = admin.describe_acls(
            AclBindingFilter(ResourceType.TOPIC, secure.names.deadletter,
                             ResourcePatternType.LITERAL, "User:projector", "*",
                             AclOperation.ANY, AclPermissionType.DENY),
            request_timeout=REQUEST_TIMEOUT_S).result()
        assert [binding.operation for binding in left] == [AclOperation.READ]
    finally:
        filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal,
                                    b.host, b.operation, b.permission_type)
                   for b in (stray, deny)]
        for future in admin.delete_acls(filters, request_timeout=REQUEST_TIMEOUT_S).values():
            future.result()


def eventually(check: Callable[[], bool], wait_s: float = 10.0) -> bool:
    """ACL changes reach the authorizer through the metadata log: a moment later."""
    deadline = time.monotonic() + wait_s
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)


# --- the commands ----------------------------------------------------------------------------

def test_broker_start_secure_on_the_running_folder_prints_the_two_settings_last(secure):
    before = {p.name: p.read_text() for p in secure.clients_dir.iterdir()}

    started = katagate("broker", "start", "--secure", "--data", str(secure.folder),
                       env=secure.env())

    assert started.returncode == 0, started.stderr
    lines = started.stdout.strip().splitlines()
    assert any(line.startswith("broker already running: pid ") for line in lines)
    assert lines[-2:] == [f"KATAGATE_KAFKA_CONFIG_DIR={secure.clients_dir}",
                          f"KAFKA_BOOTSTRAP_SERVERS={secure.bootstrap}"]
    assert not any("sasl.password" in line or "password=" in line for line in lines)
    files = sorted(secure.clients_dir.iterdir())
    assert [p.name for p in files] == sorted(f"{name}.properties" for name in PRINCIPALS)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(secure.clients_dir.stat().st_mode) == 0o700
    # The passwords are kept: a restart does not lock the running stages out.
    assert {p.name: p.read_text() for p in files} == before

    status = katagate("broker", "status", "--data", str(secure.folder), env=secure.env())
    assert status.returncode == 0, status.stderr
    assert f"KAFKA_BOOTSTRAP_SERVERS={secure.bootstrap}" in status.stdout
    assert f"KATAGATE_KAFKA_CONFIG_DIR={secure.clients_dir}" in status.stdout


def test_config_show_never_prints_the_password(secure):
    password = secure.password("ingest")
    shown = katagate("config", "show", "--kafka", "--principal", "ingest", env=secure.env())
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "sasl.username=ingest" in lines  # the principal's own file was read
    assert "sasl.password=[redacted]" in lines
    assert f"bootstrap.servers={secure.bootstrap}" in lines
    assert password not in shown.stdout
    assert password not in shown.stderr


def test_each_properties_file_holds_its_own_principal(secure):
    for name in PRINCIPALS:
        text = secure.properties_text(name)
        assert f"sasl.username={name}\n" in text
        assert "security.protocol=SASL_SSL\n" in text
        assert Path(text.split("ssl.ca.location=")[1].splitlines()[0]).is_file()
    assert len({secure.password(name) for name in PRINCIPALS}) == len(PRINCIPALS)
