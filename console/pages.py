"""What each page shows, as plain data from the configuration: the product's windows, their
labels and values. Pure; the templates only lay it out."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from admin.labels import ACTION_LABELS
from schemas import DEFAULT_RULE, ControlState, KataSettings, Rule
from schemas.control import MIB

# The product's management console tree: a section is a link, or a tree of leaves.
NAVIGATION = (
    ("Settings", (("Protection", (("KATA Protection", "/settings/protection/kata"),)),
                  ("Notifications", "/settings/notifications"))),
    ("Rules", "/rules"),
    ("Tracking", "/tracking"),
    ("Message queue", (("KATA Quarantine", "/queue/kata-quarantine"),
                       ("Delivery queue", "/queue/delivery"))),
    ("Backup", "/backup"),
)


@dataclass(frozen=True)
class FormField:
    name: str  # as the API and the admin commands name it
    label: str  # as the product's window names it
    value: str
    kind: str = "text"  # text | number | checkbox
    unit: str = ""
    hint: str = ""


@dataclass(frozen=True)
class KataProtectionPage:
    protection_enabled: bool
    fields: tuple[FormField, ...]
    version: int
    address_set: bool


def _size_field(settings: KataSettings) -> FormField:
    size = settings.quarantine_max_bytes
    if size % MIB == 0:
        return FormField("quarantine_max_size_mb", "KATA Quarantine maximum size",
                         str(size // MIB), "number", "MB", "at least 1 MB; default 1024 MB")
    # Set in bytes (CLI or API): shown as it is, so Apply does not round it.
    return FormField("quarantine_max_bytes", "KATA Quarantine maximum size", str(size),
                     "number", "bytes", "at least 1048576 bytes (1 MB)")


def kata_protection_page(state: ControlState) -> KataProtectionPage:
    """Settings → Protection → KATA Protection, and the KATA Protection window's fields."""
    settings = state.settings
    address = settings.central_node_address
    fields = (
        FormField("central_node_address", "KATA Central Node IPv4-address",
                  "" if address is None else str(address), hint="e.g. 192.0.2.10"),
        FormField("central_node_port", "KATA Central Node port",
                  str(settings.central_node_port), "number", hint="1..65535; default 443"),
        FormField("response_timeout_s", "KATA response timeout",
                  str(settings.response_timeout_s), "number", "s",
                  "60..86400 s; default 600 s"),
        _size_field(settings),
        FormField("quarantine_max_messages", "Maximum number of messages in KATA Quarantine",
                  str(settings.quarantine_max_messages), "number",
                  hint="1..4294967296; default 5000"),
        FormField("ndr_enabled", "Send NDR for messages rejected after the SMTP session",
                  "on" if settings.ndr_enabled else "off", "checkbox"),
        FormField("poll_interval_s", "Central Node poll interval",
                  str(settings.poll_interval_s), "number", "s", "1..3600 s; default 60 s"),
    )
    return KataProtectionPage(state.protection_enabled, fields, state.version,
                              address is not None)


@dataclass(frozen=True)
class RuleRow:
    rule_id: str
    name: str
    position: str
    enabled: bool
    kata_enabled: bool
    action: str
    tag: str
    backup: bool
    senders: str
    recipients: str
    built_in: bool


def rule_row(rule: Rule) -> RuleRow:
    built_in = rule.rule_id == DEFAULT_RULE.rule_id
    return RuleRow(
        rule_id=rule.rule_id, name=rule.name,
        position="last" if built_in else str(rule.position), enabled=rule.enabled,
        kata_enabled=rule.kata.enabled, action=ACTION_LABELS[rule.kata.action],
        tag="(none)" if rule.kata.tag is None else rule.kata.tag, backup=rule.kata.backup,
        senders=", ".join(rule.senders), recipients=", ".join(rule.recipients),
        built_in=built_in,
    )


def rules_page(state: ControlState) -> tuple[RuleRow, ...]:
    """Rules in the order they are matched, the built-in default rule last."""
    return tuple(rule_row(rule) for rule in [*state.ordered_rules(), DEFAULT_RULE])


@dataclass(frozen=True)
class RulePage:
    row: RuleRow
    rule: Rule
    actions: tuple[tuple[str, str, bool], ...]  # value, label, selected
    tag_set: bool
    version: int


def rule_page(state: ControlState, rule: Rule) -> RulePage:
    """Rules → a rule: its general fields and its KATA protection section."""
    return RulePage(
        row=rule_row(rule), rule=rule,
        actions=tuple((value, label, value == rule.kata.action)
                      for value, label in ACTION_LABELS.items()),
        tag_set=rule.kata.tag is not None, version=state.version,
    )


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path on this console only, else `/`. Browsers drop tabs
    and newlines from a URL and read `\\` as `/`, so `/\t/evil.example` or `/\\evil` would leave
    the site: any control character, space or backslash is refused, as is `//host` or a scheme."""
    if (not path or not path.startswith("/") or path.startswith("//")
            or any(c in "\\" or c.isspace() or not c.isprintable() for c in path)):
        return "/"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return "/"
    return path
