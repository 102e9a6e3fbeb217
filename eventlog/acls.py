"""The principals' grants (eventlog/principals.py) made true on a cluster: what is missing is
created, and what a principal of ours holds on the namespace beyond its grants is deleted, so
the cluster ends with exactly the derived set. Run as a principal allowed to alter ACLs
(`admin` on katagate's own secure broker).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from katagate.eventlog.errors import KatagateError
from katagate.eventlog.principals import PRINCIPALS, Grant, Pattern, Resource, grants

RESOURCE: dict[Resource, ResourceType] = {
    "topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID, "cluster": ResourceType.BROKER}
PATTERN: dict[Pattern, ResourcePatternType] = {
    "literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


class AclError(KatagateError):
    """The cluster refused to list, create or delete ACLs."""


@dataclass(frozen=True)
class Plan:
    create: list[Grant]
    delete: list[Grant]
    kept: int


def binding(grant: Grant) -> AclBinding:
    return AclBinding(RESOURCE[grant.resource], grant.name, PATTERN[grant.pattern],
                      f"User:{grant.principal}", "*", AclOperation[grant.operation],
                      AclPermissionType.ALLOW)


def _grant(found: AclBinding) -> Grant | None:
    """A binding of one of our principals in katagate's terms; None for any other kind."""
    kind = next((k for k, v in RESOURCE.items() if v == found.restype), None)
    pattern = next((k for k, v in PATTERN.items() if v == found.resource_pattern_type), None)
    if (kind is None or pattern is None or found.permission_type != AclPermissionType.ALLOW
            or found.host != "*" or not found.principal.startswith("User:")):
        return None
    operation = found.operation
    return Grant(found.principal.removeprefix("User:"), kind, found.name, pattern,
                 operation.name if isinstance(operation, AclOperation) else str(operation))


def _ours(grant: Grant, prefix: str) -> bool:
    return grant.resource == "cluster" or grant.name.startswith((f"{prefix}.", f"{prefix}-"))


def in_force(admin: AdminClient, timeout_s: float) -> tuple[list[Grant], list[AclBinding]]:
    """Our principals' ALLOW grants on the cluster, and any of their bindings that katagate
    never makes (a DENY, a host other than *): those are reported, never touched."""
    found: list[Grant] = []
    foreign: list[AclBinding] = []
    for name in PRINCIPALS:
        # None matches any resource name and host (the stubs say str).
        query = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,  # type: ignore[arg-type]
                                 f"User:{name}", None, AclOperation.ANY,  # type: ignore[arg-type]
                                 AclPermissionType.ANY)
        try:
            bindings = admin.describe_acls(query, request_timeout=timeout_s).result()
        except KafkaException as exc:
            raise AclError(f"listing the ACLs of User:{name}: {exc.args[0].str()}") from exc
        for each in bindings:
            grant = _grant(each)
            (found.append(grant) if grant is not None else foreign.append(each))
    return found, foreign


def plan(admin: AdminClient, prefix: str, timeout_s: float) -> tuple[Plan, list[AclBinding]]:
    wanted = set(grants(prefix))
    found, foreign = in_force(admin, timeout_s)
    have = {g for g in found if _ours(g, prefix)}
    return Plan(sorted(wanted - have), sorted(have - wanted), len(wanted & have)), foreign


def apply(admin: AdminClient, change: Plan, timeout_s: float, prefix: str | None = None,
          ) -> None:
    """Make `change`; with `prefix`, return only once the broker answers with the grants in
    force (they reach it a moment after the controller took them, and a stage started in
    between would be refused its own group)."""
    _change(admin, change, timeout_s)
    deadline = time.monotonic() + timeout_s
    while prefix is not None and change.create:
        pending, _foreign = plan(admin, prefix, timeout_s)
        if not pending.create:
            return
        if time.monotonic() > deadline:
            raise AclError(f"{len(pending.create)} grants not in force after {timeout_s:g} s")
        time.sleep(0.2)


def _change(admin: AdminClient, change: Plan, timeout_s: float) -> None:
    if change.create:
        futures = admin.create_acls([binding(g) for g in change.create],
                                    request_timeout=timeout_s)
        for made, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                raise AclError(f"creating {made}: {exc.args[0].str()}") from exc
    if change.delete:
        filters = [AclBindingFilter(RESOURCE[g.resource], g.name, PATTERN[g.pattern],
                                    f"User:{g.principal}", "*", AclOperation[g.operation],
                                    AclPermissionType.ALLOW) for g in change.delete]
        for removed, future in admin.delete_acls(filters, request_timeout=timeout_s).items():
            try:
                future.result()
            except KafkaException as exc:
                raise AclError(f"deleting {removed}: {exc.args[0].str()}") from exc
