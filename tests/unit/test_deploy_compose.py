"""deploy/compose/compose.yaml as an operator exposes it: only SMTP is published on every
interface (the console, Grafana and Prometheus on 127.0.0.1 only), no service has a default
password (Grafana's admin password is a generated secret), every katagate service reports its
/healthz through a health check, and the audit checkpointer runs with its signing key from a
secret that make_secrets.py makes in the form audit/keys.py reads."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from katagate.audit.keys import load_or_create
from tests.unit.test_deploy_manifests import COMPOSE, compose

# Published on every interface on purpose: mail comes from other hosts.
PUBLIC = {"ingest"}
HEALTHZ = re.compile(r"http://127\.0\.0\.1:(\d+)/healthz")


def published(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host address, host port(s)) of each published port; no address means every one."""
    found = []
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        if len(parts) == 3:
            found.append((parts[0], parts[1]))
        else:
            found.append(("0.0.0.0", parts[0]))  # noqa: S104 - what docker binds without one
    return found


def exposure_problems(services: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in services.items():
        for address, port in published(service):
            if address != "127.0.0.1" and name not in PUBLIC:
                problems.append(f"{name}: port {port} published on {address}")
    return problems


def long_running_katagate(services: dict[str, Any]) -> dict[str, Any]:
    """The stages, console and checkpointer: `katagate <x> ... run` on Kafka (after the setup
    job), restarted; not the demo sink or the emulator."""
    return {name: s for name, s in services.items()
            if s.get("image", "").startswith("katagate") and "run" in s.get("command", [])[:3]
            and s.get("restart") == "unless-stopped" and "kafka-setup" in s.get("depends_on", {})}


def test_given_the_compose_file_then_only_smtp_is_published_beyond_this_host():
    services = compose()["services"]
    assert exposure_problems(services) == []
    assert published(services["ingest"]) == [("0.0.0.0", "2525-2526")]  # noqa: S104
    for name in ("console", "grafana", "prometheus"):
        assert [address for address, _ in published(services[name])] == ["127.0.0.1"], name
    # The check can fail: an unqualified port, as compose.yaml had before.
    services["grafana"]["ports"] = ["3000:3000"]
    assert exposure_problems(services) == ["grafana: port 3000 published on 0.0.0.0"]


def test_given_grafana_then_its_admin_password_is_a_generated_secret_not_a_default():
    data = compose()
    grafana = data["services"]["grafana"]
    environment = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment
    target = environment["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    mounted = {f"/run/secrets/{s['target']}": s["source"] for s in grafana["secrets"]}
    assert data["secrets"][mounted[target]]["file"] == "./secrets/grafana-admin-password"
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "admin/admin" not in COMPOSE.read_text()
    # No service anywhere sets a password, a token or a key by value.
    for name, service in data["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", variable):
                assert variable.endswith(("_FILE", "__FILE")), f"{name}: {variable}"
                assert str(value).startswith("/run/secrets/"), f"{name}: {variable}"


def test_given_every_katagate_service_then_its_health_check_asks_its_own_healthz():
    services = compose()["services"]
    running = long_running_katagate(services)
    assert set(running) == {"ingest", "scanner", "decider", "projector", "console", "audit"}
    for name, service in running.items():
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", name
        (port,) = HEALTHZ.findall(" ".join(check["test"]))
        prefix = f"KATAGATE_{name.upper()}_"
        assert service["environment"][f"{prefix}METRICS_PORT"] == port, name
        assert service["environment"][f"{prefix}METRICS_HOST"] == "0.0.0.0", name  # noqa: S104
        assert {"interval", "timeout", "retries"} <= check.keys(), name


def test_given_the_audit_checkpointer_then_it_signs_with_its_secret_key_and_keeps_a_witness():
    data = compose()
    audit = data["services"]["audit"]
    assert audit["command"] == ["audit", "checkpoint", "run"]
    environment = audit["environment"]
    targets = {s["target"]: s["source"] for s in audit["secrets"]}
    assert environment["KATAGATE_AUDIT_KEY_DIR"] == "/run/secrets"
    assert data["secrets"][targets["audit.key"]]["file"] == "./secrets/audit.key"
    assert data["secrets"][targets["audit.pub"]]["file"] == "./secrets/audit.pub"
    witness = environment["KATAGATE_AUDIT_WITNESS"]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in audit["volumes"]}
    assert volumes[witness] in data["volumes"], "the witness must outlive the container"


def load_make_secrets() -> ModuleType:
    path = COMPOSE.parent / "make_secrets.py"
    spec = importlib.util.spec_from_file_location("make_secrets_compose", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, int | None]]:
    folder = tmp_path_factory.mktemp("compose-secrets")
    return folder, load_make_secrets().make(folder)


def test_given_make_secrets_then_the_audit_key_loads_as_the_checkpointer_reads_it(
        made: tuple[Path, dict[Path, int | None]]):
    folder, owners = made
    key = load_or_create(folder)  # refuses a key others may read, or not Ed25519
    assert key.public_path == folder / "audit.pub"
    assert owners[folder / "audit.key"] == owners[folder / "audit.pub"] == 10001


def test_given_make_secrets_then_grafana_gets_a_random_password_it_can_read(
        made: tuple[Path, dict[Path, int | None]]):
    folder, owners = made
    password = (folder / "grafana-admin-password").read_text()
    assert len(password) >= 32
    assert password != "admin"
    assert owners[folder / "grafana-admin-password"] == 472  # grafana/grafana's user
    other = load_make_secrets().make(folder.parent / "other")
    assert (folder.parent / "other" / "grafana-admin-password").read_text() != password
    assert other
