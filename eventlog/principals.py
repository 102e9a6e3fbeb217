"""Who may do what on the cluster: one Kafka principal per stage, and what each one's code
reads, writes, joins and commits under. The stages take their consumer group and
transactional ids from here, and `katagate acls apply` derives its grants from the same
table, so a grant cannot drift from what the code does.

Names under the namespace `P` (the topic prefix): topics `P.<name>`, consumer groups
`P.<group>...` and transactional ids `P-<id>...`, both prefixes, so instances can add their own
suffix (`P-ingest-<instance>`, `P.projector.reader-<random>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from katagate.eventlog.topics import TopicNames

Resource = Literal["topic", "group", "transactional_id", "cluster"]
Pattern = Literal["literal", "prefixed"]


@dataclass(frozen=True)
class Principal:
    name: str
    reads: tuple[str, ...] = ()  # TopicNames attributes
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # group-id prefixes after "P."
    transactional_ids: tuple[str, ...] = ()  # transactional-id prefixes after "P-"
    cluster: tuple[str, ...] = ()  # operations on the cluster resource
    why: str = ""

    def group(self, prefix: str, name: str) -> str:
        """A consumer group id this principal may use; an undeclared one is a bug here."""
        if not any(name.startswith(allowed) for allowed in self.groups):
            raise ValueError(f"principal {self.name} declares no consumer group {name!r}")
        return f"{prefix}.{name}"

    def transactional_id(self, prefix: str, name: str) -> str:
        if not any(name.startswith(allowed) for allowed in self.transactional_ids):
            raise ValueError(f"principal {self.name} declares no transactional id {name!r}")
        return f"{prefix}-{name}"


# Administrators' control writers share one transactional id: opening one fences the others,
# so two changes never commit on the same state (admin/control_writer.py).
CONTROL_WRITER = "control-writer"

PRINCIPALS: dict[str, Principal] = {p.name: p for p in (
    # admin and console read `backup` to show and download a Backup copy (`katagate backup
    # show|download`, the console's Backup page); only apply writes it (and reads it to resend).
    Principal("admin", reads=("mail", "quarantine", "control", "backup"),
              writes=("control", "mail"), groups=("admin",),
              transactional_ids=(CONTROL_WRITER, "admin-"), cluster=("DESCRIBE", "CREATE"),
              why="the administrator commands: settings, rules, quarantine release and delete, "
                  "the Backup and the delivery queue, topic creation"),
    Principal("console", reads=("mail", "quarantine", "control", "backup"),
              writes=("control", "mail"), groups=("console",),
              transactional_ids=(CONTROL_WRITER, "console-"),
              why="the web console: the same changes as the commands, by a signed-in user"),
    # The quarantine's usage (not its ledger: Backup locations, notices), for tempfail.
    # No transactional id: it writes with an idempotent producer (ingest/writer.py).
    Principal("ingest", reads=("control", "quarantine_usage"), writes=("mail", "raw"),
              groups=("ingest",),
              why="SMTP in: raw chunks and MessageReceived"),
    # The connection lifecycle records its state, keys and pins in the control topic, so the
    # scanner writes it too (docs/SECURITY.md: moving those events to a topic of their own).
    Principal("scanner", reads=("mail", "raw", "control"),
              writes=("mail", "control"), groups=("scanner",),
              transactional_ids=("scanner-",),
              why="the KATA connector: submissions, verdicts, the connection lifecycle"),
    Principal("decider", reads=("mail", "raw", "quarantine", "control", "backup"),
              writes=("mail", "quarantine", "quarantine_usage", "backup", "deadletter"),
              groups=("decider", "admission", "apply"),
              transactional_ids=("decider-", "admission", "apply-"),
              why="admission (the quarantine ledger), decisions, apply (Backup, delivery)"),
    Principal("projector", reads=("mail", "quarantine", "control"),
              groups=("projector",),
              why="the read-only views: produces nothing"),
    Principal("audit", reads=("mail", "quarantine", "control", "audit"),
              writes=("audit",), groups=("audit",), transactional_ids=("audit-",),
              why="hash chains and signed checkpoints; replay, verify, export, reconcile"),
)}


@dataclass(frozen=True, order=True)
class Grant:
    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: str

    def line(self) -> str:
        where = self.name if self.pattern == "literal" else f"{self.name}*"
        return f"{self.principal:<10} {self.operation:<9} {self.resource:<16} {where}"


def principal(name: str) -> Principal:
    try:
        return PRINCIPALS[name]
    except KeyError:
        raise ValueError(f"unknown principal {name!r}; one of {', '.join(PRINCIPALS)}") from None


def topics_of(who: Principal, prefix: str) -> set[str]:
    names = TopicNames(prefix)
    return {getattr(names, topic) for topic in (*who.reads, *who.writes)}


def grants(prefix: str) -> list[Grant]:
    """Every grant of every principal for the namespace `prefix`, derived from PRINCIPALS.
    READ and WRITE imply DESCRIBE in Kafka's authorizer, so DESCRIBE is granted only alone."""
    names = TopicNames(prefix)
    result: set[Grant] = set()
    for who in PRINCIPALS.values():
        for topic in who.reads:
            result.add(Grant(who.name, "topic", getattr(names, topic), "literal", "READ"))
        for topic in who.writes:
            result.add(Grant(who.name, "topic", getattr(names, topic), "literal", "WRITE"))
        for group in who.groups:
            result.add(Grant(who.name, "group", f"{prefix}.{group}", "prefixed", "READ"))
        for tid in who.transactional_ids:
            pattern: Pattern = "literal" if tid == CONTROL_WRITER else "prefixed"
            result.add(Grant(who.name, "transactional_id", f"{prefix}-{tid}", pattern, "WRITE"))
        for operation in who.cluster:
            result.add(Grant(who.name, "cluster", "kafka-cluster", "literal", operation))
    return sorted(result)
