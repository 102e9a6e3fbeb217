"""The principals' grant table (eventlog/principals.py): who may write which topic, that every
group and transactional id is inside the namespace, and that the ids the stage code actually
uses are covered by its principal's grants. Those ids are found in the code itself (its calls
of `Principal.group`/`.transactional_id`, its elections and its readers), not kept by hand
here, so a stage that starts using a new id without a grant fails this test."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import katagate.eventlog.clients as eventlog_clients
from katagate.admin.control_writer import admin_transactional_id
from katagate.audit.checkpointer import transactional_id as audit_transactional_id
from katagate.eventlog.clients import reader_group
from katagate.eventlog.election import Election
from katagate.eventlog.principals import (
    CONTROL_WRITER,
    PRINCIPALS,
    Grant,
    grants,
    principal,
    topics_of,
)
from katagate.eventlog.settings import KafkaSettings
from katagate.eventlog.topics import TopicNames

PREFIX = "gw.test"
ROOT = Path(__file__).resolve().parents[2]
# Where a process of katagate builds Kafka clients.
PACKAGES = ("admin", "audit", "console", "decider", "eventlog", "ingest", "katagate",
            "projector", "scanner", "access")
TOPIC_KINDS = ("mail", "raw", "quarantine", "quarantine_usage", "control", "backup", "audit",
               "deadletter")


def settings(prefix: str = PREFIX) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers="127.0.0.1:9", topic_prefix=prefix, config_file=None,
                         config_dir=None, principal=None)


def covering(resource: str, name: str, operation: str, prefix: str = PREFIX) -> list[Grant]:
    """The grants under which a request on `name` is allowed, as Kafka's authorizer matches."""
    return [g for g in grants(prefix)
            if g.resource == resource and g.operation == operation
            and (g.name == name if g.pattern == "literal" else name.startswith(g.name))]


def holders(resource: str, name: str, operation: str, prefix: str = PREFIX) -> set[str]:
    return {g.principal for g in covering(resource, name, operation, prefix)}


def topic_writers(kind: str) -> set[str]:
    return holders("topic", getattr(TopicNames(PREFIX), kind), "WRITE")


# --- who writes what -------------------------------------------------------------------------

def test_only_admin_console_and_the_scanner_write_the_control_topic():
    # The scanner is the documented exception: its connection lifecycle records state, keys
    # and pins there (docs/SECURITY.md). Nobody else may change settings or rules.
    assert topic_writers("control") == {"admin", "console", "scanner"}


def test_only_ingest_writes_the_raw_chunks():
    assert topic_writers("raw") == {"ingest"}


def test_only_audit_writes_the_audit_topic():
    assert topic_writers("audit") == {"audit"}


def test_only_the_decider_writes_quarantine_backup_and_deadletter():
    assert topic_writers("quarantine") == {"decider"}
    assert topic_writers("backup") == {"decider"}
    assert topic_writers("deadletter") == {"decider"}


def test_given_the_backup_copies_then_only_apply_the_admin_commands_and_the_console_read_them():
    # The copies are whole detected messages: the administrator's tools read them (show,
    # download); the projector only lists what the ledger says, never the bytes.
    assert holders("topic", TopicNames(PREFIX).backup, "READ") == {"decider", "admin", "console"}


def test_given_tempfail_then_ingest_reads_the_quarantine_usage_but_never_the_ledger():
    # Given the ledger holds Backup copies' locations and sha256 and the notices' texts
    # When ingest (the internet-facing stage) needs the usage for 451 4.7.0 "quarantine full"
    # Then it reads the usage topic only, which only the decider (admission) writes
    names = TopicNames(PREFIX)
    assert "ingest" not in holders("topic", names.quarantine, "READ")
    assert "ingest" in holders("topic", names.quarantine_usage, "READ")
    assert topic_writers("quarantine_usage") == {"decider"}


def test_the_projector_writes_nothing_and_has_no_transactional_id():
    projector = PRINCIPALS["projector"]
    assert projector.writes == ()
    assert projector.transactional_ids == ()
    assert projector.cluster == ()
    own = [g for g in grants(PREFIX) if g.principal == "projector"]
    assert own, "the projector reads: it has grants"
    assert {g.operation for g in own} == {"READ"}
    assert {g.resource for g in own} <= {"topic", "group"}
    with pytest.raises(ValueError, match="declares no transactional id"):
        projector.transactional_id(PREFIX, "projector-1")


def test_only_admin_may_create_topics_or_describe_the_cluster():
    assert {g.principal for g in grants(PREFIX) if g.resource == "cluster"} == {"admin"}


def test_every_principal_that_writes_does_so_in_transactions_of_its_own():
    # ingest alone writes without a transaction: an idempotent producer (ingest/writer.py).
    for who in PRINCIPALS.values():
        assert bool(who.writes) == bool(who.transactional_ids) or who.name == "ingest", who.name
    assert PRINCIPALS["ingest"].transactional_ids == ()


def test_every_topic_a_principal_writes_or_reads_is_one_of_the_namespaces_topics():
    names = TopicNames(PREFIX)
    every = {getattr(names, kind) for kind in TOPIC_KINDS}
    for who in PRINCIPALS.values():
        assert set(who.reads) | set(who.writes) <= set(TOPIC_KINDS), who.name
        assert topics_of(who, PREFIX) <= every


# --- names inside the namespace --------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRINCIPALS))
def test_every_group_and_transactional_id_grant_is_a_prefix_inside_the_namespace(name):
    own = [g for g in grants(PREFIX) if g.principal == name]
    for grant in own:
        if grant.resource == "topic":
            assert grant.name.startswith(f"{PREFIX}.")
            assert grant.pattern == "literal"
        elif grant.resource == "group":
            assert grant.name.startswith(f"{PREFIX}.")
            assert grant.pattern == "prefixed"
            assert grant.operation == "READ"
        elif grant.resource == "transactional_id":
            assert grant.name.startswith(f"{PREFIX}-")
            assert grant.operation == "WRITE"
            # Only the shared control writer is literal: it fences, so it must be exact.
            assert (grant.pattern == "literal") == (grant.name == f"{PREFIX}-{CONTROL_WRITER}")
    assert len([g for g in own if g.resource == "group"]) == len(PRINCIPALS[name].groups)
    assert len([g for g in own if g.resource == "transactional_id"]) == len(
        PRINCIPALS[name].transactional_ids)


def test_no_principals_prefix_covers_another_principals_names():
    """Else one stage could join another's group, or fence its transactions."""
    for resource in ("group", "transactional_id"):
        mine = [g for g in grants(PREFIX) if g.resource == resource]
        for grant in mine:
            for other in mine:
                if other.principal == grant.principal or grant.pattern == "literal":
                    continue
                if other.name == f"{PREFIX}-{CONTROL_WRITER}":
                    continue
                assert not other.name.startswith(grant.name), (grant, other)


def test_the_control_writer_id_is_shared_by_admin_and_console_alone():
    assert holders("transactional_id", admin_transactional_id(PREFIX), "WRITE") == {
        "admin", "console"}


def test_grants_follow_the_prefix_and_another_namespace_is_not_covered():
    assert holders("topic", "other.control", "WRITE", PREFIX) == set()
    assert holders("group", "other.decider", "READ", PREFIX) == set()
    assert holders("group", "other.decider", "READ", "other") == {"decider"}
    assert holders("transactional_id", "gw-scanner-1", "WRITE", "gw") == {"scanner"}
    # A longer namespace sharing the first letters: its names are not ours.
    assert holders("transactional_id", "gwx-scanner-1", "WRITE", "gw") == set()
    assert holders("group", "gwx.ingest", "READ", "gw") == set()


def test_grants_are_unique_and_sorted():
    made = grants(PREFIX)
    assert made == sorted(set(made))


# --- Principal's own checks ------------------------------------------------------------------

def test_an_undeclared_group_or_transactional_id_is_refused_naming_principal_and_name():
    ingest = PRINCIPALS["ingest"]
    with pytest.raises(ValueError, match="principal ingest declares no consumer group 'decider'"):
        ingest.group(PREFIX, "decider")
    with pytest.raises(ValueError,
                       match="principal ingest declares no transactional id 'ingest-1'"):
        ingest.transactional_id(PREFIX, "ingest-1")  # it writes without a transaction
    assert ingest.group(PREFIX, "ingest-anything") == f"{PREFIX}.ingest-anything"
    scanner = PRINCIPALS["scanner"]
    with pytest.raises(ValueError,
                       match="principal scanner declares no transactional id 'decider-1'"):
        scanner.transactional_id(PREFIX, "decider-1")
    assert scanner.transactional_id(PREFIX, "scanner-a") == f"{PREFIX}-scanner-a"


def test_an_unknown_principal_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown principal 'mallory'; one of admin, "):
        principal("mallory")
    assert principal("scanner") is PRINCIPALS["scanner"]


def test_a_grant_line_shows_a_prefix_with_a_star():
    line = Grant("ingest", "group", f"{PREFIX}.ingest", "prefixed", "READ").line()
    assert line.split() == ["ingest", "READ", "group", f"{PREFIX}.ingest*"]


# --- the ids the code uses, found in the code ------------------------------------------------

@dataclass(frozen=True)
class Use:
    where: str  # path:line
    principal: str
    kind: str  # "group", "transactional_id", "election", "reader"
    name: str  # the name as the call passes it, an f-string's fields as "x1"
    topic: str | None = None  # an election's topic kind


def _example(node: ast.expr) -> str | None:
    """A string literal, or an f-string with each field replaced by a sample value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(part.value) if isinstance(part, ast.Constant) else "x1"
                       for part in node.values)
    return None


def _principal_of(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """PRINCIPALS["x"], or a module-level name bound to it."""
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
            and node.value.id == "PRINCIPALS" and isinstance(node.slice, ast.Constant)):
        return str(node.slice.value)
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    return None


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else None)


def _uses_in(path: Path) -> Iterator[Use]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    aliases = {target.id: name
               for statement in tree.body if isinstance(statement, ast.Assign)
               for target in statement.targets if isinstance(target, ast.Name)
               if (name := _principal_of(statement.value, {})) is not None}
    referenced = {name for node in ast.walk(tree) if isinstance(node, ast.expr)
                  if (name := _principal_of(node, {})) is not None}
    where = path.relative_to(ROOT)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = _called(node)
        at = f"{where}:{node.lineno}"
        if (called in ("group", "transactional_id") and isinstance(node.func, ast.Attribute)
                and (who := _principal_of(node.func.value, aliases)) is not None):
            name = _example(node.args[1])
            assert name is not None, f"{at}: a {called} name katagate cannot read statically"
            yield Use(at, who, called, name)
        elif called == "Election" and path.name != "election.py":
            role = _example(node.args[1])
            assert role is not None, f"{at}: an election role that is not a literal"
            # The election's principal: the one this module takes its other ids from.
            assert len(referenced) == 1, f"{at}: an election in a module of {referenced}"
            topic = node.args[2]
            kind = topic.attr if isinstance(topic, ast.Attribute) else None
            yield Use(at, next(iter(referenced)), "election", role, kind)
        elif called in ("new_reader", "reader_config") and where != Path("eventlog/clients.py"):
            role = _example(node.args[1]) if len(node.args) > 1 else None
            assert role is not None, f"{at}: a reader role that is not a literal"
            yield Use(at, "", "reader", role)


def code_uses() -> list[Use]:
    return [use for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            for use in _uses_in(path)]


USES = code_uses()


def test_the_scan_finds_the_stages_ids():
    """The scan cannot pass by finding nothing: the ids every stage is known to use."""
    found = {(use.principal, use.kind, use.name) for use in USES}
    assert {("decider", "group", "decider"), ("decider", "group", "apply"),
            ("decider", "group", "admission-offsets"),
            ("decider", "transactional_id", "admission"),
            ("decider", "transactional_id", "decider-x1"),
            ("decider", "transactional_id", "apply-x1"),
            ("scanner", "group", "scanner"), ("scanner", "transactional_id", "scanner-x1"),
            ("scanner", "transactional_id", "scanner-lifecycle"),
            ("console", "transactional_id", "console-quarantine"),
            ("admin", "transactional_id", "admin-quarantine"),
            ("audit", "transactional_id", "audit-checkpointer"),
            ("scanner", "election", "scanner-lifecycle"), ("decider", "election", "admission"),
            ("audit", "election", "audit-checkpointer")} <= found
    assert {use.name for use in USES if use.kind == "reader"} >= {
        "visible", "audit", "projector", "fold", "raw-reader", "restore-x1"}


@pytest.mark.parametrize("use", [u for u in USES if u.kind == "group"], ids=lambda u: u.where)
def test_every_consumer_group_the_code_names_is_covered_by_its_principals_grant(use):
    group = PRINCIPALS[use.principal].group(PREFIX, use.name)
    assert holders("group", group, "READ") == {use.principal}, use


@pytest.mark.parametrize("use", [u for u in USES if u.kind == "transactional_id"],
                         ids=lambda u: u.where)
def test_every_transactional_id_the_code_names_is_covered_by_its_principals_grant(use):
    tid = PRINCIPALS[use.principal].transactional_id(PREFIX, use.name)
    assert holders("transactional_id", tid, "WRITE") == {use.principal}, use


@pytest.fixture
def election_groups(monkeypatch) -> list[str]:
    """The group id of each Election made, read from the configuration it builds its consumer
    with (a real consumer, its bootstrap a port where nothing listens)."""
    made: list[str] = []
    real = eventlog_clients.new_consumer

    def recording(kafka: KafkaSettings, own: dict[str, Any]) -> Any:
        made.append(own["group.id"])
        return real(kafka, {**own, "log_level": 0})

    monkeypatch.setattr("katagate.eventlog.election.new_consumer", recording)
    return made


@pytest.mark.parametrize("use", [u for u in USES if u.kind == "election"], ids=lambda u: u.where)
def test_every_elections_group_and_topic_are_its_principals(use, election_groups):
    kafka = settings().as_principal(use.principal)
    assert use.topic in TOPIC_KINDS, use
    topic = getattr(TopicNames(PREFIX), use.topic)
    election = Election(kafka, use.name, topic, "test-instance")
    election.close()
    [group] = election_groups
    assert holders("group", group, "READ") == {use.principal}, (use, group)
    assert use.principal in holders("topic", topic, "READ"), (use, topic)


@pytest.mark.parametrize("role", sorted({u.name for u in USES if u.kind == "reader"}))
@pytest.mark.parametrize("name", sorted(PRINCIPALS))
def test_every_readers_group_falls_under_its_principals_prefixed_grant_alone(name, role):
    group = reader_group(settings().as_principal(name), role)
    found = covering("group", group, "READ")
    assert {g.principal for g in found} == {name}, group
    assert all(g.pattern == "prefixed" for g in found)


def test_a_reader_without_a_principal_is_covered_by_no_grant():
    """Without a principal a reader's group is nobody's: only a cluster without ACLs has it."""
    assert holders("group", reader_group(settings(), "fold"), "READ") == set()


def test_the_stage_modules_own_id_functions_are_covered():
    kafka = settings()
    assert holders("transactional_id", audit_transactional_id(kafka), "WRITE") == {"audit"}
    control = admin_transactional_id(kafka.topic_prefix)
    assert [g.pattern for g in covering("transactional_id", control, "WRITE")] == [
        "literal", "literal"]

