"""Every pod template of deploy/k8s (the kustomization's and the Jobs run by hand) against the
Pod Security Standards' `restricted` profile, which namespace.yaml has the API server enforce,
checked here before a cluster sees it; and every workload for what keeps it running: probes on
/healthz and /readyz on the `metrics` port (contract item 1), requests and limits, a disruption
budget over exactly its pods, anti-affinity across its instances, and the one configuration
file (contract item 2)."""

from __future__ import annotations

import copy
import re
import tomllib
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy_manifests import K8S, ROOT, WORKLOADS, manifests

# The restricted profile, as https://kubernetes.io/docs/concepts/security/pod-security-standards/
# lists it ("latest"): every baseline control, then the restricted ones.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
# Which settings prefix each workload's process reads.
PREFIX = {"ingest": "INGEST", "scanner": "SCANNER", "decider": "DECIDER",
          "projector": "PROJECTOR", "console": "CONSOLE", "audit": "AUDIT"}
METRICS_PORT = 9100


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    """(name, pod template) of every workload and Job, the hand-run Jobs of jobs/ too."""
    docs = [doc for _, doc in manifests()]
    docs += [doc for path in sorted((K8S / "jobs").glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text()) if doc]
    return [(doc["metadata"].get("name") or doc["metadata"]["generateName"],
             doc["spec"]["template"]) for doc in docs
            if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def workloads() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests()
            if doc["kind"] in ("Deployment", "StatefulSet")}


def restricted_violations(template: dict[str, Any]) -> list[str]:
    """What a pod template breaks of the restricted profile (and of a read-only root)."""
    found: list[str] = []
    pod = template["spec"]
    pod_security = pod.get("securityContext", {})
    annotations = template.get("metadata", {}).get("annotations", {})
    containers = [*pod.get("initContainers", []), *pod["containers"],
                  *pod.get("ephemeralContainers", [])]
    # Baseline: host namespaces, host paths and ports, privileged, /proc, sysctls, SELinux,
    # AppArmor, Windows host processes.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"pod: {field}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: type {sorted(kinds)}")
    for sysctl in pod_security.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"pod: sysctl {sysctl['name']}")
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            found.append(f"pod: AppArmor {value}")
    pod_non_root = pod_security.get("runAsNonRoot") is True
    pod_seccomp = pod_security.get("seccompProfile", {}).get("type")
    contexts = [("pod", pod_security)]
    for container in containers:
        name, context = container["name"], container.get("securityContext", {})
        contexts.append((name, context))
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount")
        # Restricted: no escalation, non-root, seccomp, capabilities, and a read-only root.
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            found.append(f"{name}: runAsNonRoot is not true")
        seccomp = context.get("seccompProfile", {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities not dropped (drop: [ALL])")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities added {capabilities['add']}")
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: readOnlyRootFilesystem is not true")
    for name, context in contexts:
        if context.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser 0")
        if context.get("windowsOptions", {}).get("hostProcess"):
            found.append(f"{name}: hostProcess")
        selinux = context.get("seLinuxOptions", {})
        if selinux.get("type", "") not in SELINUX_TYPES or {"user", "role"} & selinux.keys():
            found.append(f"{name}: seLinuxOptions {selinux}")
        if context.get("seccompProfile", {}).get("type") == "Unconfined":
            found.append(f"{name}: seccompProfile Unconfined")
        apparmor = context.get("appArmorProfile", {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"{name}: appArmorProfile {apparmor}")
    return found


def test_given_the_namespace_then_it_enforces_the_restricted_profile():
    (namespace,) = [doc for _, doc in manifests() if doc["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_given_every_pod_template_then_it_meets_the_restricted_profile():
    templates = pod_templates()
    assert {name for name, _ in templates} >= set(WORKLOADS)
    for name, template in templates:
        assert restricted_violations(template) == [], name
        # No pod talks to the Kubernetes API: no token mounted.
        assert template["spec"]["automountServiceAccountToken"] is False, name


@pytest.mark.parametrize(("change", "rule"), [
    (lambda pod: pod["spec"]["initContainers"][0].update(
        securityContext={"runAsNonRoot": False, "runAsUser": 0}), "runAsNonRoot"),
    (lambda pod: pod["spec"]["containers"][0]["securityContext"].pop(
        "allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    (lambda pod: pod["spec"]["containers"][0]["securityContext"].update(
        capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}), "capabilities added"),
    (lambda pod: pod["spec"]["containers"][0]["securityContext"].update(
        capabilities={}), "capabilities not dropped"),
    (lambda pod: pod["spec"]["securityContext"].pop("seccompProfile"), "seccompProfile"),
    (lambda pod: pod["spec"]["containers"][0]["securityContext"].update(
        readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    (lambda pod: pod["spec"]["volumes"].append(
        {"name": "host", "hostPath": {"path": "/"}}), "hostPath"),
    (lambda pod: pod["spec"].update(hostNetwork=True), "hostNetwork"),
    (lambda pod: pod["spec"]["containers"][0]["securityContext"].update(privileged=True),
     "privileged"),
    (lambda pod: pod["spec"]["containers"][0]["ports"][0].update(hostPort=25), "hostPort"),
])
def test_given_a_pod_breaking_one_restricted_rule_then_the_check_names_it(change, rule):
    template = copy.deepcopy(dict(pod_templates())["ingest"])
    change(template)
    assert any(rule in violation for violation in restricted_violations(template))


def test_given_every_workload_then_its_probes_are_healthz_and_readyz_on_the_metrics_port():
    data = next(d for _, d in manifests() if d["kind"] == "ConfigMap")["data"]
    for name, workload in workloads().items():
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == METRICS_PORT, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        # The process listens there, on every interface (the kubelet and Prometheus come in).
        assert data[f"KATAGATE_{PREFIX[name]}_METRICS_PORT"] == str(METRICS_PORT), name
        assert data[f"KATAGATE_{PREFIX[name]}_METRICS_HOST"] == "0.0.0.0", name  # noqa: S104


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (100m, 1536Mi, 2Gi, "2") as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|)", str(value))
    assert match, value
    return float(match.group(1)) * units[match.group(2)]


def test_given_every_container_then_it_requests_and_is_limited_in_cpu_and_memory():
    for name, template in pod_templates():
        pod = template["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{name}/{container['name']}"
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"}, where
            assert set(resources["limits"]) == {"cpu", "memory"}, where
            for kind in ("cpu", "memory"):
                assert quantity(resources["limits"][kind]) >= quantity(
                    resources["requests"][kind]), f"{where}: {kind} limit below its request"


def test_given_every_workload_then_one_budget_covers_exactly_its_pods_and_allows_a_drain():
    budgets = [doc for _, doc in manifests() if doc["kind"] == "PodDisruptionBudget"]
    for name, workload in workloads().items():
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        replicas = workload["spec"]["replicas"]
        own = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(own) == 1, f"{name}: {len(own)} budgets"
        (budget,) = own
        assert budget["spec"]["selector"]["matchLabels"] == selector, name
        spec = budget["spec"]
        if replicas >= 2:  # one instance always runs
            assert spec.get("minAvailable") == 1, name
        else:  # a budget that keeps the only pod would block every node drain
            assert spec == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}, name


def test_given_every_workload_then_its_instances_prefer_different_nodes():
    for name, workload in workloads().items():
        terms = workload["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"]
        assert any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                   and t["podAffinityTerm"]["labelSelector"]["matchLabels"]
                   == workload["spec"]["selector"]["matchLabels"] for t in terms), name


def test_given_every_pod_then_it_mounts_the_configuration_file_katagate_config_names():
    maps = {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == "ConfigMap"}
    path = maps["katagate"]["data"]["KATAGATE_CONFIG"]
    assert path == "/etc/katagate/katagate.toml"
    for name, template in pod_templates():
        pod = template["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            if {"configMapRef": {"name": "katagate"}} not in container.get("envFrom", []):
                continue
            (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
            assert mount["readOnly"] is True, name
            assert volumes[mount["name"]]["configMap"]["name"] == "katagate-toml", name
            assert mount["subPath"] in maps["katagate-toml"]["data"], name
    # The file is TOML whose sections and keys are katagate.toml's: a misspelt one fails here.
    mounted = tomllib.loads(maps["katagate-toml"]["data"]["katagate.toml"])
    reference = tomllib.loads((ROOT / "katagate.toml").read_text())
    for section, values in mounted.items():
        assert section in reference, section
        assert set(values) <= set(reference[section]), section

