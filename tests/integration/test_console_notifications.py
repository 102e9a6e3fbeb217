"""Given the real broker, the console's notification settings: a change through the API is one
control event by the signed-in administrator, the page shows what is in force, and a refused
change writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.console_client import console_client, sign_in
from tests.integration.kafka_read import control_events

pytestmark = pytest.mark.kafka


def test_notification_settings_through_the_api_and_the_page(kafka_settings, tmp_path):
    with console_client(tmp_path / "console", kafka_settings) as (client, _console, _clock):
        csrf = sign_in(client)

        def call(method: str, path: str, body: Any = None) -> Any:
            return client.request(method, path, json=body, headers={"X-CSRF-Token": csrf})

        # Given the defaults: nobody is told
        assert call("GET", "/api/notifications").json()["settings"]["admin_addresses"] == []
        # When an administrator sets an address, recipient notices and a template
        answer = call("PUT", "/api/notifications", {
            "admin_addresses": ["soc@example.net"], "notify_recipients_deleted": True,
            "template.detect.subject": "Threat from {sender}"})
        assert answer.status_code == 200, answer.text
        # Then one control event records it, by the administrator
        (event,) = [e for e in control_events(kafka_settings)
                    if e.type == "settings.notifications_changed"]
        assert event.actor == "admin"
        assert event.settings.template("detect").subject == "Threat from {sender}"
        shown = call("GET", "/api/notifications").json()["settings"]
        assert (shown["admin_addresses"], shown["notify_recipients_deleted"]) == (
            ["soc@example.net"], True)
        # And the page's form shows it
        page = client.get("/settings/notifications")
        assert page.status_code == 200, page.text
        assert 'id="notifications-form"' in page.text
        assert 'value="soc@example.net"' in page.text
        assert 'value="Threat from {sender}"' in page.text
        # And a refused change writes nothing
        refused = call("PUT", "/api/notifications", {"template.digest.body": "{nope}"})
        assert refused.status_code == 422
        assert refused.json()["field"] == "template.digest.body"
        assert len([e for e in control_events(kafka_settings)
                    if e.type == "settings.notifications_changed"]) == 1
