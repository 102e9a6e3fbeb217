"""The JSON the API answers with, from the configuration: the same shapes as the CLI's
`--json` output (`settings show`, `rules list`, `rules show`)."""

from __future__ import annotations

from typing import Any

from katagate.console.control import Written
from katagate.schemas import ControlState, Rule


def settings_document(state: ControlState) -> dict[str, Any]:
    return {
        "version": state.version,
        "kata_protection": state.protection_enabled,
        "settings": state.settings.model_dump(mode="json"),
    }


def rule_document(rule: Rule) -> dict[str, Any]:
    document: dict[str, Any] = rule.model_dump(mode="json")
    return document


def rules_document(state: ControlState) -> dict[str, Any]:
    return {
        "version": state.version,
        "rules": [rule_document(rule) for rule in state.ordered_rules()],
        "default_rule": rule_document(state.default_rule),
    }


def written_document(written: Written, view: dict[str, Any]) -> dict[str, Any]:
    """What a change answers: the event it wrote (with its actor) and the view after it."""
    return {"version": written.after.version,
            "events": [written.event.model_dump(mode="json")], **view}
