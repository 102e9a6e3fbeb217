"""deploy/k8s's NetworkPolicies as the flows they allow, computed from the policies and the pod
templates' labels the way Kubernetes does (a pod selected by a policy of a direction is isolated
in it and reachable only through some policy's rule; a flow between two katagate pods needs the
egress of one and the ingress of the other), compared with the design's table: every flow the
design has, and not one more."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from tests.unit.test_deploy_k8s_pods import METRICS_PORT, pod_templates
from tests.unit.test_deploy_manifests import WORKLOADS, manifests

NAMESPACE = "katagate"
ANYWHERE = "anywhere"
Flow = tuple[str, str, str]  # (from, to, protocol/port)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get(
            "values", [])
        present = key in labels
        if not {"In": present and labels.get(key) in values,
                "NotIn": not present or labels[key] not in values,
                "Exists": present, "DoesNotExist": not present}[operator]:
            return False
    return True


@cache  # the YAML is parsed once for the module (read only)
def pods() -> dict[str, dict[str, str]]:
    """Each pod template of the namespace by its component label."""
    found = {}
    for _name, template in pod_templates():
        labels = template["metadata"]["labels"]
        found[labels["app.kubernetes.io/component"]] = labels
    return found


def peers(rule: list[dict[str, Any]] | None, all_pods: dict[str, dict[str, str]]) -> set[str]:
    """A rule's `from`/`to` as names: pod:<component>, ns:<name>[/<labels>], ip:<cidr>."""
    if not rule:
        return {ANYWHERE}
    found = set()
    for peer in rule:
        if "ipBlock" in peer:
            assert "except" not in peer["ipBlock"]
            found.add(f"ip:{peer['ipBlock']['cidr']}")
            continue
        namespace = NAMESPACE
        if "namespaceSelector" in peer:
            # Namespaces are named by their automatic label only (no guessing other labels).
            assert set(peer["namespaceSelector"]) == {"matchLabels"}
            (namespace,) = peer["namespaceSelector"]["matchLabels"].values()
            assert list(peer["namespaceSelector"]["matchLabels"]) == [
                "kubernetes.io/metadata.name"]
        selector = peer.get("podSelector", {})
        if namespace == NAMESPACE:
            found |= {f"pod:{c}" for c, labels in all_pods.items() if selects(selector, labels)}
        else:
            labels = ",".join(f"{k}={v}" for k, v in sorted(
                selector.get("matchLabels", {}).items()))
            found.add(f"ns:{namespace}" + (f"/{labels}" if labels else ""))
    return found


def ports(rule: dict[str, Any]) -> set[str]:
    if not rule.get("ports"):
        return {"*"}
    return {f"{p.get('protocol', 'TCP')}/{p['port']}" for p in rule["ports"]}


def same_port(one: str, other: str) -> bool:
    return "*" in (one, other) or one == other


def allowed_flows(policies: list[dict[str, Any]], all_pods: dict[str, dict[str, str]],
                  ) -> set[Flow]:
    egress: set[Flow] = set()
    ingress: set[Flow] = set()
    isolated = {"Ingress": set(), "Egress": set()}
    for policy in policies:
        spec = policy["spec"]
        chosen = {f"pod:{c}" for c, labels in all_pods.items()
                  if selects(spec["podSelector"], labels)}
        for direction in spec["policyTypes"]:
            isolated[direction] |= chosen
        for rule in spec.get("egress", []):
            egress |= {(pod, to, port) for pod in chosen for to in peers(rule.get("to"), all_pods)
                       for port in ports(rule)}
        for rule in spec.get("ingress", []):
            ingress |= {(source, pod, port) for pod in chosen
                        for source in peers(rule.get("from"), all_pods) for port in ports(rule)}
    everyone = {f"pod:{c}" for c in all_pods}
    # A pod no policy isolates talks to anyone: say so as a flow to and from anywhere.
    egress |= {(pod, ANYWHERE, "*") for pod in everyone - isolated["Egress"]}
    ingress |= {(ANYWHERE, pod, "*") for pod in everyone - isolated["Ingress"]}
    flows = {f for f in egress if not f[1].startswith("pod:")}
    flows |= {f for f in ingress if not f[0].startswith("pod:")}
    for source, to, port in egress:
        for from_, pod, in_port in ingress:
            if (to in (pod, ANYWHERE) and from_ in (source, ANYWHERE)
                    and same_port(port, in_port)):
                flows.add((source, pod, port if port != "*" else in_port))
    return flows

@cache  # the YAML is parsed once for the module (read only)
def policies() -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == "NetworkPolicy"]


@cache  # the YAML is parsed once for the module (read only)
def design() -> set[Flow]:
    """The design's table (docs/ARCHITECTURE.md; deploy/k8s/networkpolicies.yaml's head), with
    the ports the manifests give each listener."""
    data = next(d for _, d in manifests() if d["kind"] == "ConfigMap")["data"]
    kafka_port = {server.rsplit(":", 1)[1]
                  for server in data["KAFKA_BOOTSTRAP_SERVERS"].split(",")}
    (kafka_port_,) = kafka_port
    settings_job = next(t for name, t in pod_templates() if name == "kata-settings-")
    args = settings_job["spec"]["containers"][0]["args"]
    central_node = args[args.index("--central-node-address") + 1]
    central_port = args[args.index("--port") + 1]
    projector = next(t for name, t in pod_templates() if name == "projector")
    projector_args = projector["spec"]["containers"][0]["args"]
    projector_port = projector_args[projector_args.index("--port") + 1]
    (next_hop,) = [p for p in policies() if p["metadata"]["name"] == "next-hop"]
    next_hop_cidr = next_hop["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"]
    every_pod = [f"pod:{c}" for c in pods()]
    flows = {(pod, "ns:kafka", f"TCP/{kafka_port_}") for pod in every_pod}
    flows |= {(pod, "ns:kube-system/k8s-app=kube-dns", f"{protocol}/53")
              for pod in every_pod for protocol in ("UDP", "TCP")}
    flows |= {("pod:scanner", f"ip:{central_node}/32", f"TCP/{central_port}"),
              ("pod:decider", f"ip:{next_hop_cidr}",
               f"TCP/{data['KATAGATE_DECIDER_NEXT_HOP_PORT']}"),
              (ANYWHERE, "pod:ingest", f"TCP/{data['KATAGATE_INGEST_PORT']}"),
              (ANYWHERE, "pod:console", f"TCP/{data['KATAGATE_CONSOLE_PORT']}"),
              ("pod:console", "pod:projector", f"TCP/{projector_port}")}
    flows |= {("ns:monitoring", f"pod:{c}", f"TCP/{METRICS_PORT}") for c in WORKLOADS}
    return flows


def test_given_the_policies_then_the_allowed_flows_are_the_designs_and_no_more():
    computed = allowed_flows(policies(), pods())
    expected = design()
    assert computed - expected == set(), "flows the design does not have"
    assert expected - computed == set(), "flows of the design the policies refuse"


def test_given_every_pod_then_a_default_deny_isolates_it_both_ways():
    (deny,) = [p for p in policies() if p["metadata"]["name"] == "default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("extra", [
    # ingest may reach anything: a flow more.
    {"spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "ingest"}},
              "policyTypes": ["Egress"], "egress": [{}]}},
    # the projector's views open to anyone (a rule without `from`).
    {"spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "projector"}},
              "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 8080}]}]}},
    # the scanner may reach all of 192.0.2.0/24, not the Central Node alone.
    {"spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "scanner"}},
              "policyTypes": ["Egress"],
              "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
                          "ports": [{"port": 443}]}]}},
])
def test_given_a_policy_more_then_the_comparison_sees_the_extra_flow(extra: dict[str, Any]):
    computed = allowed_flows([*policies(), extra], pods())
    assert computed - design() != set()


def test_given_no_default_deny_then_the_comparison_sees_open_pods():
    without = [p for p in policies() if p["metadata"]["name"] != "default-deny"]
    # The Jobs' pods are in no other policy's Ingress: anyone could reach them.
    assert (ANYWHERE, "pod:setup", "*") in allowed_flows(without, pods()) - design()


def test_given_the_central_node_policy_then_its_address_is_the_settings_jobs():
    (policy,) = [p for p in policies() if p["metadata"]["name"] == "central-node"]
    (rule,) = policy["spec"]["egress"]
    (peer,) = rule["to"]
    # One address, /32: the only value the operator must set in the policies.
    assert peer["ipBlock"]["cidr"].endswith("/32")


def test_given_only_the_consoles_egress_then_the_projector_stays_unreachable():
    # A flow between two pods needs both halves: without the projector's ingress, none.
    without = [p for p in policies() if p["metadata"]["name"] != "projector-views"]
    assert ("pod:console", "pod:projector", "TCP/8080") not in allowed_flows(without, pods())


def test_given_every_egress_rule_then_none_reaches_anywhere_on_the_internet():
    # A rule without `to`, or an ipBlock wider than one address, lets a stage reach any host:
    # the decider, which holds every message, must reach its next hop and no other MTA.
    for policy in policies():
        for rule in policy["spec"].get("egress", []):
            name = policy["metadata"]["name"]
            assert rule.get("to"), f"{name}: an egress rule to anywhere"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    assert peer["ipBlock"]["cidr"].endswith("/32"), name


def test_given_the_next_hop_policy_then_it_is_the_decider_to_one_address_on_its_port():
    (policy,) = [p for p in policies() if p["metadata"]["name"] == "next-hop"]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "decider")
    (rule,) = policy["spec"]["egress"]
    (peer,) = rule["to"]
    assert peer["ipBlock"]["cidr"].endswith("/32")
    data = next(d for _, d in manifests() if d["kind"] == "ConfigMap")["data"]
    assert rule["ports"] == [{"protocol": "TCP",
                              "port": int(data["KATAGATE_DECIDER_NEXT_HOP_PORT"])}]
