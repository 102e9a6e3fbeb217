"""What each page shows, as plain data from the configuration: the product's windows, their
labels and values. Pure; the templates only lay it out."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from katagate.admin.labels import ACTION_LABELS
from katagate.schemas import DEFAULT_RULE, ControlState, KataSettings, Rule
from katagate.schemas.control import MIB, VERDICT_HEADER_FIELDS

# The scanner's per-message cap (decider/ledger.py) against ingest's SMTP limit
# (ingest/settings.py, `max_message_bytes`): numbers for the settings help only.
SCAN_CAP_MB = 200
SMTP_LIMIT_DEFAULT_MIB = 36
SIZE_LIMITS_HELP = (
    f"Messages over {SCAN_CAP_MB} MB are not placed in KATA Quarantine: they are Skipped "
    f"(too large). With the defaults this cannot happen: ingest refuses a message over its SMTP "
    f"size limit (max_message_bytes, default {SMTP_LIMIT_DEFAULT_MIB} MiB) with 552 5.3.4 "
    f"before it is scanned. Only when that limit is raised above {SCAN_CAP_MB} MB does the cap "
    "apply."
)
# The product's words for the gateway's key; katagate's own name stays in the help.
KSMG_FINGERPRINT_LABEL = "KSMG public key fingerprint"
KSMG_FINGERPRINT_HELP = ("katagate's Gateway public key fingerprint: the key this gateway "
                         "presents to KATA as a KSMG sensor. Compare it with the one the KATA "
                         "console shows before you accept the sensor.")
PROTECTION_OFF_WARNING = (
    "KATA protection is off in the application settings (Settings → Protection → KATA "
    "Protection): no message of this rule is sent to KATA until it is switched on there; "
    "they are Skipped."
)
ON_UNAVAILABLE_CHOICES = (
    ("skip", "Skip: deliver unscanned"),
    ("hold", "Hold until KATA answers"),
    ("tempfail", "Temporary failure (451 4.7.0)"),
)
GLOBAL = "global"  # a rule's on_unavailable select: None, the global setting

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
    kind: str = "text"  # text | number | checkbox | select
    unit: str = ""
    hint: str = ""
    default: str = ""  # what "Set default values" fills in ("": it leaves the field alone)
    choices: tuple[tuple[str, str], ...] = ()  # a select's values and labels

    @property
    def shown(self) -> str:
        """The value as the page's settings list shows it."""
        if self.kind == "checkbox":
            return "On" if self.value == "on" else "Off"
        if self.kind == "select":
            return dict(self.choices).get(self.value, self.value)
        if not self.value:
            return "(not set)"
        return f"{self.value} {self.unit}" if self.unit else self.value


@dataclass(frozen=True)
class ConnectionRow:
    """A line of the KATA connection state window; `key` names the connection document's
    field (GET /api/kata/connection) that the page's script shows there."""

    element_id: str
    label: str
    key: str
    hint: str = ""


@dataclass(frozen=True)
class KataProtectionPage:
    protection_enabled: bool
    fields: tuple[FormField, ...]
    version: int
    address_set: bool
    policy_fields: tuple[FormField, ...] = ()
    size_help: str = SIZE_LIMITS_HELP


# The KATA connection state window, as the documentation lists it: the address alone, then
# the state and both fingerprints. The port is a line of its own.
CONNECTION_WINDOW = (
    ConnectionRow("conn-address", "KATA Central Node IPv4-address", "central_node_address"),
    ConnectionRow("conn-port", "KATA Central Node port", "central_node_port"),
    ConnectionRow("conn-state", "Connection state", "connection_state"),
    ConnectionRow("conn-gateway-fingerprint", KSMG_FINGERPRINT_LABEL,
                  "ksmg_public_key_fingerprint", KSMG_FINGERPRINT_HELP),
    ConnectionRow("conn-kata-fingerprint", "KATA public key fingerprint",
                  "kata_public_key_fingerprint"),
    ConnectionRow("conn-kata-not-after", "KATA certificate valid until",
                  "kata_certificate_not_after"),
)


def _size_field(settings: KataSettings) -> FormField:
    size = settings.quarantine_max_bytes
    default = KataSettings.defaults().quarantine_max_bytes
    if size % MIB == 0:
        return FormField("quarantine_max_size_mb", "KATA Quarantine maximum size",
                         str(size // MIB), "number", "MB", "at least 1 MB; default 1024 MB",
                         default=str(default // MIB))
    # Set in bytes (CLI or API): shown as it is, so Apply does not round it.
    return FormField("quarantine_max_bytes", "KATA Quarantine maximum size", str(size),
                     "number", "bytes", "at least 1048576 bytes (1 MB)", default=str(default))


def _default(name: str) -> str:
    """A reset field's default as the form shows it ("Set default values" fills it in)."""
    return str(getattr(KataSettings.defaults(), name))


def _policy_fields(settings: KataSettings) -> tuple[FormField, ...]:
    """katagate's own settings beyond the product's window (its "Policy" block)."""
    placeholders = " ".join("{" + name + "}" for name in VERDICT_HEADER_FIELDS)
    return (
        FormField("on_unavailable", "If KATA cannot scan a message", settings.on_unavailable,
                  "select", hint="when KATA is not Connected or the KATA Quarantine is full: "
                  "skip (deliver unscanned), hold or tempfail (451 4.7.0 at SMTP); "
                  "default skip", choices=ON_UNAVAILABLE_CHOICES),
        FormField("hold_outcome", "Held message after the KATA response timeout",
                  settings.hold_outcome, "select",
                  hint="skip (deliver unscanned) or reject; default skip",
                  choices=(("skip", "Skip: deliver unscanned"), ("reject", "Reject"))),
        FormField("verdict_header_name", "Verdict header name",
                  settings.verdict_header_name or "",
                  hint="e.g. X-KATA-Verdict: letters, digits and '-', at most 76; empty: no "
                       "header (the default)"),
        FormField("verdict_header_format", "Verdict header value",
                  settings.verdict_header_format,
                  hint=f"1..200 printable ASCII characters; placeholders {placeholders}; "
                       "default {verdict}; scanned={scanned_at}"),
        FormField("verdict_cache_ttl_s", "Verdict cache time-to-live",
                  str(settings.verdict_cache_ttl_s), "number", "s",
                  "0..604800 s (0: no cache); default 3600 s"),
    )


def kata_protection_page(state: ControlState) -> KataProtectionPage:
    """Settings → Protection → KATA Protection, and the KATA Protection window's fields."""
    settings = state.settings
    address = settings.central_node_address
    fields = (
        FormField("central_node_address", "KATA Central Node IPv4-address",
                  "" if address is None else str(address), hint="e.g. 192.0.2.10"),
        FormField("central_node_port", "KATA Central Node port",
                  str(settings.central_node_port), "number", hint="1..65535; default 443",
                  default=_default("central_node_port")),
        FormField("response_timeout_s", "KATA response timeout",
                  str(settings.response_timeout_s), "number", "s",
                  "60..86400 s; default 600 s", default=_default("response_timeout_s")),
        _size_field(settings),
        FormField("quarantine_max_messages", "Maximum number of messages in KATA Quarantine",
                  str(settings.quarantine_max_messages), "number",
                  hint="1..4294967296; default 5000",
                  default=_default("quarantine_max_messages")),
        FormField("ndr_enabled", "Send NDR for messages rejected after the SMTP session",
                  "on" if settings.ndr_enabled else "off", "checkbox"),
        FormField("poll_interval_s", "Central Node poll interval",
                  str(settings.poll_interval_s), "number", "s", "1..3600 s; default 60 s"),
    )
    return KataProtectionPage(state.protection_enabled, fields, state.version,
                              address is not None, _policy_fields(settings))


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
    on_unavailable: str = GLOBAL  # the rule's own, or the global setting's


def rule_row(rule: Rule) -> RuleRow:
    built_in = rule.rule_id == DEFAULT_RULE.rule_id
    return RuleRow(
        rule_id=rule.rule_id, name=rule.name,
        position="last" if built_in else str(rule.position), enabled=rule.enabled,
        kata_enabled=rule.kata.enabled, action=ACTION_LABELS[rule.kata.action],
        tag="(none)" if rule.kata.tag is None else rule.kata.tag, backup=rule.kata.backup,
        senders=", ".join(rule.senders), recipients=", ".join(rule.recipients),
        built_in=built_in,
        on_unavailable=rule.kata.on_unavailable or GLOBAL,
    )


def rules_page(state: ControlState) -> tuple[RuleRow, ...]:
    """Rules in the order they are matched, the built-in default rule last."""
    return tuple(rule_row(rule) for rule in [*state.ordered_rules(), state.default_rule])


@dataclass(frozen=True)
class RulePage:
    row: RuleRow
    rule: Rule
    actions: tuple[tuple[str, str, bool], ...]  # value, label, selected
    tag_set: bool
    version: int
    protection_warning: str = ""  # shown on the KATA section while protection is off globally
    on_unavailable: tuple[tuple[str, str, bool], ...] = ()  # value, label, selected
    on_unavailable_value: str = GLOBAL


def rule_page(state: ControlState, rule: Rule) -> RulePage:
    """Rules → a rule: its general fields and its KATA protection section."""
    own = rule.kata.on_unavailable
    in_force = dict(ON_UNAVAILABLE_CHOICES)[state.settings.on_unavailable]
    return RulePage(
        row=rule_row(rule), rule=rule,
        actions=tuple((value, label, value == rule.kata.action)
                      for value, label in ACTION_LABELS.items()),
        tag_set=rule.kata.tag is not None, version=state.version,
        protection_warning="" if state.protection_enabled else PROTECTION_OFF_WARNING,
        on_unavailable=((GLOBAL, f"As in the settings ({in_force})", own is None),
                        *((value, label, value == own)
                          for value, label in ON_UNAVAILABLE_CHOICES)),
        on_unavailable_value=GLOBAL if own is None else own,
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
