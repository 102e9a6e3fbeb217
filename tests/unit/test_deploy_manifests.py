"""The deployment files are checked, not just kept: the Kubernetes manifests against the
Kubernetes API schemas (strict), the compose file by docker-compose's own parser, and both for
what operators rely on: replicas, probes, resources, disruption budgets, a 3-node Kafka with
replication 3 and min ISR 2, and environment names that are real settings (a misspelt
KATAGATE_* variable would be silently ignored). Their security (TLS, SCRAM, ACLs, secrets) is
checked in test_deploy_security.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from katagate.console.settings import ConsoleSettings
from katagate.decider.settings import DeciderSettings
from katagate.eventlog.settings import KafkaSettings
from katagate.ingest.settings import IngestSettings
from katagate.projector.settings import ProjectorSettings
from katagate.scanner.settings import ScannerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
KAFKA_NODE = ROOT / "deploy" / "compose" / "kafka" / "server.properties"
# Not Kubernetes API objects of this kustomization: Strimzi's, applied in the Kafka's namespace.
NOT_KUSTOMIZED = {"kustomization.yaml", "strimzi-users.yaml"}
STAGES = ("ingest", "scanner", "decider", "projector")
# Outside KATAGATE_<STAGE>_*: what the process itself reads.
OTHER_ENV = {"KAFKA_BOOTSTRAP_SERVERS", "MALLOC_ARENA_MAX", "KATA_EMULATOR_STATE"}


def known_env() -> set[str]:
    names = set(OTHER_ENV)
    for prefix, model in (("KATAGATE_INGEST_", IngestSettings),
                          ("KATAGATE_SCANNER_", ScannerSettings),
                          ("KATAGATE_DECIDER_", DeciderSettings),
                          ("KATAGATE_PROJECTOR_", ProjectorSettings),
                          ("KATAGATE_CONSOLE_", ConsoleSettings),
                          ("KATAGATE_", KafkaSettings)):
        for name, field in model.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, str):  # e.g. KATAGATE_KAFKA_CONFIG for config_file
                names.add(alias)
            elif isinstance(alias, AliasChoices):
                names |= {choice for choice in alias.choices if isinstance(choice, str)}
            else:
                names.add(prefix + name.upper())
    return names


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) if path.name not in NOT_KUSTOMIZED
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def node_properties() -> dict[str, str]:
    """The compose Kafka nodes' shared server.properties."""
    lines = KAFKA_NODE.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_every_manifest_is_valid_against_the_kubernetes_schemas():
    import kubernetes_validate

    docs = manifests()
    assert len(docs) >= 15
    for version in ("1.29.0", "1.33.0"):
        for _path, doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)  # raises, naming the field
    # And a broken one is caught (the check can fail).
    broken = next(doc for _, doc in docs if doc["kind"] == "Deployment")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.33.0", strict=True)


def test_the_kustomization_lists_every_manifest_and_kustomize_builds_it():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name not in NOT_KUSTOMIZED)
    assert sorted(listed) == present
    if shutil.which("kubectl") is None:
        return  # kustomize is checked where kubectl is installed; the schemas everywhere
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                           check=False, timeout=60)
    assert built.returncode == 0, built.stderr
    assert len([d for d in yaml.safe_load_all(built.stdout) if d]) == len(manifests())


def test_every_stage_runs_twice_with_probes_resources_and_a_disruption_budget():
    docs = [doc for _, doc in manifests()]
    workloads = {doc["metadata"]["name"]: doc for doc in docs
                 if doc["kind"] in ("Deployment", "StatefulSet")}
    assert set(workloads) == set(STAGES)
    budgets = [doc for doc in docs if doc["kind"] == "PodDisruptionBudget"]
    for name, workload in workloads.items():
        spec = workload["spec"]
        assert spec["replicas"] >= 2, name
        labels = spec["template"]["metadata"]["labels"]
        assert any(b["spec"]["selector"]["matchLabels"].items() <= labels.items()
                   and b["spec"]["minAvailable"] == 1 for b in budgets), f"{name}: no PDB"
        for container in spec["template"]["spec"]["containers"]:
            assert {"readinessProbe", "livenessProbe"} <= container.keys(), name
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
            assert "memory" in container["resources"]["limits"], name
            assert {"configMapRef": {"name": "katagate"}} in container["envFrom"], name
    # Scanner and decider instances keep their names (sensorInstanceId, static membership).
    assert workloads["scanner"]["kind"] == workloads["decider"]["kind"] == "StatefulSet"
    # The sensor key comes from a Secret, never from the ConfigMap.
    scanner_volumes = workloads["scanner"]["spec"]["template"]["spec"]["volumes"]
    assert {"secretName": "katagate-sensor", "defaultMode": 0o400} in [
        v.get("secret") for v in scanner_volumes]


def test_the_configmap_and_the_pods_name_only_real_settings():
    known = known_env()
    for _, doc in manifests():
        if doc["kind"] == "ConfigMap":
            unknown = set(doc["data"]) - known
            assert not unknown, f"not settings: {unknown}"
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                unknown = {e["name"] for e in container.get("env", [])} - known
                assert not unknown, f"not settings: {unknown}"
    for service in compose()["services"].values():
        if service.get("image", "").startswith("apache/kafka"):
            continue  # Kafka's own configuration
        unknown = set(service.get("environment", {})) - known
        assert not unknown, f"not settings: {unknown}"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_parses_the_compose_file():
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing (scripts/system-packages installs it)")
        pytest.skip("docker-compose is not installed")
    checked = subprocess.run([tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                             text=True, check=False, timeout=60, cwd=COMPOSE.parent)
    assert checked.returncode == 0, checked.stderr
    # It does check: the same file with a service that names a bad key is refused.
    bad = COMPOSE.parent / ".broken-compose.yaml"
    data = compose()
    data["services"]["ingest"]["deploy"]["replicas"] = "two"
    bad.write_text(yaml.safe_dump(data))
    try:
        refused = subprocess.run([tool, "-f", str(bad), "config", "-q"], capture_output=True,
                                 text=True, check=False, timeout=60, cwd=COMPOSE.parent)
    finally:
        bad.unlink()
    assert refused.returncode != 0


def test_the_compose_cluster_has_three_replicated_nodes_and_every_stage_twice():
    services = compose()["services"]
    nodes = {name: s for name, s in services.items() if s.get("image", "").startswith(
        "apache/kafka")}
    assert len(nodes) == 3
    # One configuration for the three (start.sh adds each node's id and address).
    node = node_properties()
    assert node["default.replication.factor"] == "3"
    assert node["min.insync.replicas"] == "2"
    assert node["transaction.state.log.replication.factor"] == "3"
    assert node["transaction.state.log.min.isr"] == "2"
    assert node["offsets.topic.replication.factor"] == "3"
    assert node["unclean.leader.election.enable"] == "false"
    assert node["auto.create.topics.enable"] == "false"
    assert node["controller.quorum.voters"] == ",".join(
        f"{n['environment']['KAFKA_NODE_ID']}@{n['hostname']}:9093" for n in nodes.values())
    assert len({n["environment"]["KAFKA_NODE_ID"] for n in nodes.values()}) == 3
    for stage in STAGES:
        assert services[stage]["deploy"]["replicas"] >= 2, stage
    # Every file the compose file mounts is in the repository.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).resolve().exists(), source
    assert {"prometheus", "grafana"} <= services.keys()
