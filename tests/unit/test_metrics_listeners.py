"""Every stage's metrics listener has its own address setting: an IP literal, loopback by
default; ingest refuses settings that would serve metrics on the SMTP listener's address."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from katagate.console.settings import ConsoleSettings
from katagate.decider.settings import DeciderSettings
from katagate.ingest.settings import IngestSettings
from katagate.projector.settings import ProjectorSettings
from katagate.scanner.settings import ScannerSettings

STAGES = [IngestSettings, ScannerSettings, DeciderSettings, ProjectorSettings, ConsoleSettings]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.__name__)
def test_each_stage_serves_metrics_on_loopback_unless_its_own_setting_says_otherwise(stage):
    assert stage().metrics_host == "127.0.0.1"
    assert stage(metrics_host="0.0.0.0").metrics_host == "0.0.0.0"  # noqa: S104 - a container
    assert stage(metrics_host="::1").metrics_host == "::1"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.__name__)
@pytest.mark.parametrize("bad", ["metrics.example.org", "localhost", "127.0.0.1:9101", "", "::g"])
def test_a_metrics_host_that_is_not_an_ip_address_is_refused_naming_the_setting(stage, bad):
    with pytest.raises(ValidationError) as refused:
        stage(metrics_host=bad)
    text = str(refused.value)
    assert "metrics_host" in text
    assert "not an IP address to listen on" in text


def test_smtp_on_every_interface_leaves_ingest_metrics_on_loopback():
    settings = IngestSettings(host="0.0.0.0", port=25, metrics_port=9101)  # noqa: S104
    assert settings.metrics_host == "127.0.0.1"


@pytest.mark.parametrize(("host", "metrics_host"), [
    ("0.0.0.0", "127.0.0.1"),  # noqa: S104 - SMTP on every interface holds 127.0.0.1:25 too
    ("192.0.2.10", "0.0.0.0"),  # noqa: S104
    ("192.0.2.10", "192.0.2.10"),
])
def test_ingest_refuses_metrics_on_the_smtp_listeners_address(host, metrics_host):
    with pytest.raises(ValidationError, match=r"metrics_host:metrics_port .* SMTP listener"):
        IngestSettings(host=host, port=25, metrics_host=metrics_host, metrics_port=25)


def test_ingest_metrics_may_share_a_port_number_on_another_address_or_take_any_free_port():
    assert IngestSettings(host="192.0.2.10", port=25, metrics_port=25).metrics_port == 25
    assert IngestSettings(port=0, metrics_port=0).metrics_port == 0


def test_the_projector_refuses_metrics_on_its_views_address():
    with pytest.raises(ValidationError, match=r"metrics_host:metrics_port .* projector listener"):
        ProjectorSettings(host="0.0.0.0", port=8080, metrics_port=8080)  # noqa: S104
    assert ProjectorSettings(port=8080, metrics_port=9103).metrics_port == 9103


def test_the_console_refuses_metrics_on_its_own_address():
    with pytest.raises(ValidationError, match=r"metrics_host:metrics_port .* console listener"):
        ConsoleSettings(host="0.0.0.0", port=8081, metrics_port=8081)  # noqa: S104
    assert ConsoleSettings(port=8081, metrics_port=9104).metrics_port == 9104
