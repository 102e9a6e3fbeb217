"""The JSON API: the CLI's admin commands over HTTP. Every change is an admin command (admin/)
deciding on the latest configuration, written as a control event whose actor is the caller;
every refusal names the field and what it accepts (console.problems)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from katagate.admin import values
from katagate.admin.central_node import pin_key
from katagate.admin.errors import InvalidCommand
from katagate.admin.notifications import change_notifications
from katagate.admin.notifications import validate as validate_notifications
from katagate.admin.rules import (
    change_rule,
    create_rule,
    delete_rule,
    existing_rule,
    set_rule_kata,
    validate_default_rule_fields,
    validate_deletable,
    validate_new_rule_id,
    validate_rule_fields,
    validate_rule_id,
)
from katagate.admin.settings import (
    change_settings,
    reset_settings,
    set_protection,
    validate_settings,
)
from katagate.console.auth import Caller, Who, authorised, console_of
from katagate.console.control import Context, Decide
from katagate.console.documents import (
    rule_document,
    rules_document,
    settings_document,
    written_document,
)
from katagate.console.export import FORMATS, VIEWS, rules_csv, settings_csv
from katagate.console.problems import Problem, ProblemError, problem, validate_each
from katagate.schemas import CentralNodeObserved, ControlState, Event, NodeAddress

router = APIRouter(prefix="/api", dependencies=[Depends(authorised)])


def _refused(refusal: InvalidCommand) -> ProblemError:
    return ProblemError(problem(refusal))


def _write(request: Request, who: Caller, decide: Decide) -> Any:
    try:
        return console_of(request).control.write(who.actor, decide)
    except InvalidCommand as exc:
        raise _refused(exc) from exc


# -- Settings → Protection → KATA Protection ---------------------------------------------------

class SettingsChange(BaseModel):
    """Any of the KATA Protection window's fields; what is not named stays as it is. Values are
    checked by the admin commands (numbers may also be given as decimal strings)."""

    model_config = ConfigDict(extra="allow")
    central_node_address: JsonValue = Field(None, description="KATA Central Node IPv4-address")
    central_node_port: JsonValue = Field(None, description="KATA Central Node port, 1..65535")
    response_timeout_s: JsonValue = Field(None, description="KATA response timeout, "
                                                            "60..86400 s")
    quarantine_max_size_mb: JsonValue = Field(None, description="KATA Quarantine maximum size "
                                                                "in MB, at least 1")
    quarantine_max_bytes: JsonValue = Field(None, description="the same in bytes (not both)")
    quarantine_max_messages: JsonValue = Field(None, description="Maximum number of messages "
                                                                 "in KATA Quarantine, "
                                                                 "1..4294967296")
    ndr_enabled: JsonValue = Field(None, description="NDR for messages rejected after the "
                                                     "SMTP session: true/false")
    poll_interval_s: JsonValue = Field(None, description="Central Node poll interval, "
                                                         "1..3600 s")
    backup_max_age_days: JsonValue = Field(None, description="Backup storage period, "
                                                             "1..3650 days")
    backup_max_bytes: JsonValue = Field(None, description="Backup maximum size in bytes, "
                                                          "at least 1048576")
    on_unavailable: JsonValue = Field(None, description="mail KATA cannot scan now: skip, "
                                                        "hold or tempfail")
    hold_outcome: JsonValue = Field(None, description="held mail after its response timeout: "
                                                      "skip or reject")
    verdict_header_name: JsonValue = Field(None, description="verdict header on delivered "
                                                             "mail, e.g. X-KATA-Verdict; "
                                                             "null or 'off': none")
    verdict_header_format: JsonValue = Field(None, description="the verdict header's value, "
                                                               "with {verdict} {scanned_at} "
                                                               "{scan_id} {detects} "
                                                               "{message_id}")
    verdict_cache_ttl_s: JsonValue = Field(None, description="verdict cache time-to-live, "
                                                             "0..604800 s (0: off)")


def given(body: BaseModel) -> dict[str, object]:
    """The fields the client sent (extra ones too: the admin command names unknown ones)."""
    return body.model_dump(exclude_unset=True)


@router.get("/settings", tags=["settings"], summary="The KATA Protection settings in force")
def get_settings(request: Request) -> dict[str, Any]:
    return settings_document(console_of(request).control.state())


@router.put("/settings", tags=["settings"], summary="Change KATA Protection settings (Apply)")
def put_settings(body: SettingsChange, who: Who, request: Request) -> dict[str, Any]:
    changes = given(body)
    validate_each(validate_settings, changes)  # every bad field named, before Kafka
    written = _write(request, who, lambda state, ctx: change_settings(state, changes, **ctx))
    return written_document(written, settings_document(written.after))


@router.post("/settings/defaults", tags=["settings"],
             summary="Set default values and save them at once: port 443, timeout 600 s, "
                     "1024 MB, 5000 messages (the console's window only fills them in)")
def set_defaults(who: Who, request: Request) -> dict[str, Any]:
    written = _write(request, who, lambda state, ctx: reset_settings(state, **ctx))
    return written_document(written, settings_document(written.after))


# -- Notifications -----------------------------------------------------------------------------

class NotificationsChange(BaseModel):
    """Any notification setting (`katagate notifications set` names); templates as
    `template.<kind>.subject` / `template.<kind>.body` (or "default"). Unknown names are refused
    by the admin command, naming them."""

    model_config = ConfigDict(extra="allow")
    admin_addresses: JsonValue = Field(None, description="up to 20 administrator addresses")
    rate_limit_per_hour: JsonValue = Field(None, description="single notices per hour, "
                                                             "0..1000; the rest: the digest")
    digest_interval_s: JsonValue = Field(None, description="the digest's interval, "
                                                           "60..86400 s")


def _notifications(state: ControlState) -> dict[str, Any]:
    return {"version": state.version,
            "settings": state.notifications.model_dump(mode="json")}


@router.get("/notifications", tags=["settings"], summary="The notification settings in force")
def get_notifications(request: Request) -> dict[str, Any]:
    return _notifications(console_of(request).control.state())


@router.put("/notifications", tags=["settings"], summary="Change notification settings")
def put_notifications(body: NotificationsChange, who: Who, request: Request) -> dict[str, Any]:
    changes = given(body)
    validate_each(validate_notifications, changes)  # every bad field named, before Kafka
    written = _write(request, who,
                     lambda state, ctx: change_notifications(state, changes, **ctx))
    return written_document(written, _notifications(written.after))


class PinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fingerprint: str = Field(description="the KATA public key fingerprint the administrator "
                                         "compared with the one KATA shows (SHA-256, hex)",
                             max_length=200)


# Before /kata/{switch}, which would take "pin" for a switch.
@router.post("/kata/pin", tags=["settings"],
             summary="Confirm (pin) the Central Node's public key fingerprint, as `katagate "
                     "kata pin` does; the only way to pin under require_manual_pin")
def kata_pin(body: PinRequest, who: Who, request: Request) -> dict[str, Any]:
    def decide(state: ControlState, ctx: Context) -> Event:
        address = state.settings.central_node_address
        node = None if address is None else NodeAddress(
            address=address, port=state.settings.central_node_port)
        return pin_key(node, body.fingerprint, ctx["actor"], ctx["now"])

    written = _write(request, who, decide)
    event = written.event
    assert isinstance(event, CentralNodeObserved)  # noqa: S101 - what pin_key returns
    return {"pinned": event.fingerprint,
            "central_node": f"{event.central_node.address}:{event.central_node.port}"}


@router.post("/kata/{switch}", tags=["settings"],
             summary="The global KATA protection switch: enable or disable")
def kata_switch(switch: str, who: Who, request: Request) -> dict[str, Any]:
    if switch not in ("enable", "disable"):
        raise ProblemError(Problem(404, f"no such action {switch[:40]!r}", "switch",
                                   ["enable", "disable"]))
    enabled = switch == "enable"
    written = _write(request, who,
                     lambda state, ctx: set_protection(state, enabled, **ctx))
    return written_document(written, settings_document(written.after))


@router.get("/kata/connection", tags=["settings"],
            summary="The KATA connection state window (from the projector)")
def connection(request: Request) -> dict[str, Any]:
    return console_of(request).projector.connection()


# -- Rules --------------------------------------------------------------------------------------

class RuleKataFields(BaseModel):
    """A rule's KATA protection section."""

    model_config = ConfigDict(extra="allow")
    enabled: JsonValue = Field(None, description="KATA protection for the rule: true/false")
    action: JsonValue = Field(None, description="If KATA detected an event: delete | reject | "
                                                "skip")
    tag: JsonValue = Field(None, description="text added at the start of the Subject on a "
                                             "detect, 1..255 characters; null: none")
    backup: JsonValue = Field(None, description="Place copy in Backup: true/false")
    on_unavailable: JsonValue = Field(None, description="mail KATA cannot scan now: skip, "
                                                        "hold or tempfail; null or 'global': "
                                                        "the global setting")


class RuleFields(BaseModel):
    """Rule fields; what is not named stays as it is (or takes the product's default)."""

    model_config = ConfigDict(extra="allow")
    name: JsonValue = Field(None, description="1..128 characters")
    enabled: JsonValue = Field(None, description="true/false")
    position: JsonValue = Field(None, description="lower is matched first, 0..2147483646")
    senders: JsonValue = Field(None, description="envelope sender patterns, e.g. "
                                                 "['*@example.com']")
    recipients: JsonValue = Field(None, description="envelope recipient patterns")
    kata: RuleKataFields | None = None


class NewRule(RuleFields):
    rule_id: str = Field(description="1..64 of a-z, 0-9, '-' and '_'")


def rule_fields(body: RuleFields) -> dict[str, object]:
    """The admin commands' flat names: `kata.action` for {"kata": {"action": ...}}."""
    fields = given(body)
    fields.pop("rule_id", None)
    kata = fields.pop("kata", None)
    if isinstance(kata, Mapping):
        fields.update({f"kata.{name}": value for name, value in kata.items()})
    return fields


def _checked_id(rule_id: str, check: Callable[[str], str] = validate_rule_id) -> str:
    try:
        return check(rule_id)
    except InvalidCommand as exc:
        raise _refused(exc) from exc


def _default_rule_fields(rule_id: str, fields: dict[str, object]) -> None:
    try:
        validate_default_rule_fields(rule_id, fields)
    except InvalidCommand as exc:
        raise _refused(exc) from exc


@router.get("/rules", tags=["rules"], summary="The rules in the order they are matched")
def list_rules(request: Request) -> dict[str, Any]:
    return rules_document(console_of(request).control.state())


@router.get("/rules/{rule_id}", tags=["rules"], summary="One rule ('default': the built-in)")
def get_rule(rule_id: str, request: Request) -> dict[str, Any]:
    state = console_of(request).control.state()
    try:
        return rule_document(existing_rule(state, rule_id))
    except InvalidCommand as exc:
        raise _refused(exc) from exc


@router.post("/rules", status_code=201, tags=["rules"],
             summary="Create a rule (KATA on, Delete message, tag '[KATA detect]', Backup on "
                     "unless told)")
def post_rule(body: NewRule, who: Who, request: Request) -> dict[str, Any]:
    rule_id = _checked_id(body.rule_id, validate_new_rule_id)
    fields = rule_fields(body)
    validate_each(validate_rule_fields, fields)
    written = _write(request, who,
                     lambda state, ctx: create_rule(state, rule_id, fields, **ctx))
    return written_document(written, {"rule": rule_document(written.after.rules[rule_id])})


@router.put("/rules/{rule_id}", tags=["rules"],
            summary="Change a rule: name, order, enabled, patterns, KATA section ('default': "
                    "the KATA section only)")
def put_rule(rule_id: str, body: RuleFields, who: Who, request: Request) -> dict[str, Any]:
    _checked_id(rule_id)
    fields = rule_fields(body)
    validate_each(validate_rule_fields, fields)
    _default_rule_fields(rule_id, fields)
    written = _write(request, who,
                     lambda state, ctx: change_rule(state, rule_id, fields, **ctx))
    return written_document(written, {"rule": rule_document(written.after.rule(rule_id))})


@router.put("/rules/{rule_id}/kata", tags=["rules"],
            summary="A rule's KATA protection section (only `enabled`: the rule's switch)")
def put_rule_kata(rule_id: str, body: RuleKataFields, who: Who,
                  request: Request) -> dict[str, Any]:
    _checked_id(rule_id)
    section = given(body)
    fields = {f"kata.{name}": value for name, value in section.items()}
    validate_each(validate_rule_fields, fields)
    if set(section) == {"enabled"}:
        try:
            enabled = values.switch("kata.enabled", section["enabled"])
        except InvalidCommand as exc:
            raise _refused(exc) from exc
        written = _write(request, who,
                         lambda state, ctx: set_rule_kata(state, rule_id, enabled, **ctx))
    else:
        written = _write(request, who,
                         lambda state, ctx: change_rule(state, rule_id, fields, **ctx))
    return written_document(written, {"rule": rule_document(written.after.rule(rule_id))})


@router.delete("/rules/{rule_id}", tags=["rules"],
               summary="Delete a rule (not 'default': it is built in)")
def remove_rule(rule_id: str, who: Who, request: Request) -> dict[str, Any]:
    _checked_id(rule_id, validate_deletable)
    written = _write(request, who, lambda state, ctx: delete_rule(state, rule_id, **ctx))
    return written_document(written, {})


# -- Export (every role, every token scope: it only reads) ----------------------------------------

@router.get("/export/{file}", tags=["export"],
            summary="The settings or the rules as a file: settings.json, settings.csv, "
                    "rules.json or rules.csv")
def export(file: str, who: Who, request: Request) -> Response:
    view, _, fmt = file.partition(".")
    if view not in VIEWS or fmt not in FORMATS:
        raise ProblemError(Problem(404, f"file: no export {file[:40]!r}", "file",
                                   [f"{v}.{f}" for v in VIEWS for f in FORMATS]))
    state = console_of(request).control.state()
    headers = {"Content-Disposition": f'attachment; filename="katagate-{view}.{fmt}"'}
    if fmt == "csv":
        text = settings_csv(state) if view == "settings" else rules_csv(state)
        return Response(text, media_type="text/csv; charset=utf-8", headers=headers)
    document = settings_document(state) if view == "settings" else rules_document(state)
    return JSONResponse({**document, "exported_by": who.actor}, headers=headers)
