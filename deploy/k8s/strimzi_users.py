"""Writes deploy/k8s/strimzi-users.yaml from the grant table (eventlog/principals.py, what
`katagate acls show` prints): one Strimzi KafkaUser per principal, SCRAM-SHA-512, its ACLs
exactly that principal's grants. A unit test fails when the file and the table differ.

    python deploy/k8s/strimzi_users.py > deploy/k8s/strimzi-users.yaml
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

import yaml

from katagate.eventlog.principals import PRINCIPALS, grants

PREFIX = "katagate"  # KATAGATE_TOPIC_PREFIX in config.yaml
KAFKA = "katagate"  # the Strimzi Kafka resource
NAMESPACE = "kafka"  # where it and its User Operator live
RESOURCE = {"topic": "topic", "group": "group", "transactional_id": "transactionalId",
            "cluster": "cluster"}
PATTERN = {"literal": "literal", "prefixed": "prefix"}

HEADER = f"""\
# One Strimzi KafkaUser per katagate principal: SCRAM-SHA-512, and simple-authorization ACLs
# that are exactly that principal's grants (`katagate acls show`; eventlog/principals.py).
# Generated: python deploy/k8s/strimzi_users.py > deploy/k8s/strimzi-users.yaml (a unit test
# fails when this file and the grant table differ). Not in kustomization.yaml: apply it where
# the Kafka and its User Operator are,
#
#   kubectl apply -n {NAMESPACE} -f deploy/k8s/strimzi-users.yaml
#
# for a Kafka named {KAFKA} whose client listener has `authentication: {{type: scram-sha-512}}`
# and `tls: true`, with `authorization: {{type: simple, superUsers: [admin]}}` (README.md). The
# User Operator writes each user's password to a Secret of the user's name in {NAMESPACE};
# deploy/k8s/kafka-secrets.sh turns those into each stage's properties Secret in katagate.
# Topic prefix: {PREFIX}. Kafka implies Describe from Read and Write, so it is listed only alone.
"""


def operation(name: str) -> str:
    return "".join(word.capitalize() for word in name.split("_"))


def users(prefix: str = PREFIX) -> list[dict[str, Any]]:
    acls: dict[str, dict[tuple[str, str, str], list[str]]] = defaultdict(dict)
    for grant in grants(prefix):
        key = (grant.resource, grant.name, grant.pattern)
        acls[grant.principal].setdefault(key, []).append(operation(grant.operation))
    documents = []
    for name in PRINCIPALS:
        rules = []
        for (kind, resource_name, pattern), operations in acls[name].items():
            resource: dict[str, str] = {"type": RESOURCE[kind]}
            if kind != "cluster":
                resource |= {"name": resource_name, "patternType": PATTERN[pattern]}
            rules.append({"resource": resource, "operations": sorted(operations), "host": "*"})
        documents.append({
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaUser",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": {"strimzi.io/cluster": KAFKA,
                                    "app.kubernetes.io/part-of": "katagate"}},
            "spec": {"authentication": {"type": "scram-sha-512"},
                     "authorization": {"type": "simple", "acls": rules}},
        })
    return documents


def render(prefix: str = PREFIX) -> str:
    body = yaml.safe_dump_all(users(prefix), sort_keys=False, default_flow_style=None,
                              width=100)
    return HEADER + "---\n" + body


if __name__ == "__main__":
    sys.stdout.write(render())
