"""The deployments' Kafka security, without a Docker engine or a cluster: the compose nodes have
no plaintext listener, authenticate clients with SCRAM over TLS and each other with mutual TLS,
and authorise every request; no password, key or token is in an environment variable or an
image; every stage (compose service, Kubernetes pod) mounts its own principal's properties file
and no other; the setup job runs as admin before the stages; the Strimzi users are the grant
table; make_secrets.py makes every file compose mounts, as katagate and Kafka will read them."""

from __future__ import annotations

import importlib.util
import re
import stat
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from katagate.eventlog.client_properties import parse_properties
from katagate.eventlog.principals import PRINCIPALS, Grant, grants
from katagate.projector.guard import token_file
from tests.unit.test_deploy_manifests import (
    COMPOSE,
    K8S,
    ROOT,
    compose,
    manifests,
    node_properties,
)

DEPLOY = ROOT / "deploy"
START = DEPLOY / "compose" / "kafka" / "start.sh"
STRIMZI = K8S / "strimzi-users.yaml"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|JAAS|(^|_)KEYS?($|_)", re.I)
SECRET_VALUE = re.compile(r"sasl\.password|password=|-----BEGIN|kgp_|ScramLoginModule", re.I)
# Which principal a katagate command runs as (eventlog/principals.py, katagate/*_cmd.py).
COMMAND_PRINCIPAL = {
    ("ingest", "run"): "ingest", ("scanner", "run"): "scanner", ("decider", "run"): "decider",
    ("projector", "run"): "projector", ("console", "run"): "console",
    ("audit", "checkpoint"): "audit", ("topics", "create"): "admin", ("acls", "apply"): "admin",
    ("settings", "set"): "admin",
}
# katagate commands that never reach Kafka.
NO_KAFKA = {("scanner", "identity"), ("kata-emulator", "serve"), ("sink", "run")}


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def katagate_commands(words: list[str]) -> list[tuple[str, str]]:
    """The (command, action) pairs a container runs: its argv, or a `sh -c` line's commands."""
    if words[:2] == ["/bin/sh", "-c"] or words[:2] == ["sh", "-c"]:
        found = []
        for part in re.split(r"&&|;", words[2]):
            argv = part.split()
            if argv and argv[0] == "katagate":
                found.append((argv[1], argv[2]))
        return found
    if words and words[0] == "katagate":
        words = words[1:]
    return [(words[0], words[1])] if len(words) >= 2 else []


def service_commands(service: dict[str, Any]) -> list[tuple[str, str]]:
    entrypoint = service.get("entrypoint")
    if entrypoint and entrypoint[0] not in ("katagate",):
        if entrypoint[0] in ("/bin/sh", "sh"):
            return katagate_commands(entrypoint)
        return []  # not katagate (python scripts, Kafka's own start)
    return katagate_commands([*(entrypoint or []), *service.get("command", [])])


# -- the compose Kafka nodes -----------------------------------------------------------------

def test_the_nodes_have_no_plaintext_listener_and_authenticate_everyone():
    node = node_properties()
    protocols = dict(pair.split(":") for pair in node["listener.security.protocol.map"].split(","))
    listeners = {entry.split("://")[0]: entry.split(":")[-1]
                 for entry in node["listeners"].split(",")}
    assert set(listeners) == set(protocols)
    assert protocols == {"CLIENT": "SASL_SSL", "INTERNAL": "SSL", "CONTROLLER": "SSL"}
    assert node["inter.broker.listener.name"] == "INTERNAL"
    assert node["controller.listener.names"] == "CONTROLLER"
    # Nodes authenticate each other by certificate; clients by SCRAM-SHA-512 only.
    assert node["listener.name.internal.ssl.client.auth"] == "required"
    assert node["listener.name.controller.ssl.client.auth"] == "required"
    assert node["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert node["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "ScramLoginModule required" in node[
        "listener.name.client.scram-sha-512.sasl.jaas.config"]
    # Every request is authorised, nothing without an ACL; the same as the local secure broker.
    assert node["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
    assert node["allow.everyone.if.no.acl.found"] == "false"
    assert node["super.users"] == "User:broker;User:admin"
    assert node["ssl.principal.mapping.rules"] == "RULE:^CN=([^,]+),.*$/$1/,DEFAULT"
    # The client port is what the stages and kafka-users use.
    services = compose()["services"]
    bootstrap = services["ingest"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"].split(",")
    assert {b.rsplit(":", 1)[1] for b in bootstrap} == {listeners["CLIENT"]}
    command = services["kafka-users"]["command"]
    internal = command[command.index("--internal") + 1].split(",")
    clients = command[command.index("--clients") + 1].split(",")
    assert clients == bootstrap
    assert {i.rsplit(":", 1)[1] for i in internal} == {listeners["INTERNAL"]}
    assert "advertised.listeners=CLIENT://${host}:9092,INTERNAL://${host}:9094" in (
        START.read_text())


def test_the_nodes_read_keys_and_passwords_from_mounted_secrets_only():
    node = node_properties()
    for key, value in node.items():
        if "password" in key:
            assert re.fullmatch(r"\$\{file:/run/secrets/[\w.-]+:[\w.]+\}", value), key
    assert node["config.providers.file.param.allowed.paths"] == "/run/secrets"
    mounted_files = {node["ssl.keystore.location"], node["ssl.truststore.location"]} | {
        m.group(1) for m in re.finditer(r"\$\{file:([^:]+):", "\n".join(node.values()))}
    services = compose()["services"]
    nodes = [s for s in services.values() if s.get("image", "").startswith("apache/kafka")]
    for number, service in enumerate(nodes, start=1):
        targets = {f"/run/secrets/{s['target']}": s["source"] for s in service["secrets"]}
        assert mounted_files == set(targets), service["hostname"]
        assert targets["/run/secrets/kafka-node.p12"] == f"kafka-{number}-store"
        # The image's entry point would put KAFKA_* variables (a listener named SSL: the
        # key store's password) in the environment; start.sh reads the mounted file instead.
        assert service["entrypoint"] == ["/bin/sh", "/etc/kafka/katagate/start.sh"]
        assert set(service["environment"]) == {"CLUSTER_ID", "KAFKA_NODE_ID"}
        assert service["user"] == "1000:1000"  # make_secrets.KAFKA_UID owns the key stores
    code = [line for line in START.read_text().splitlines() if not line.startswith("#")]
    used = set(re.findall(r"\$\{?(\w+)", "\n".join(code)))
    assert used == {"KAFKA_NODE_ID", "CLUSTER_ID", "config", "host"}


# -- no secret in an environment variable ------------------------------------------------------

def check_variable(where: str, name: str, value: Any) -> None:
    text = str(value)
    assert not SECRET_VALUE.search(text), f"{where}: {name} holds a secret"
    if SECRET_NAME.search(name):
        # Only the path of a mounted file may be named so (…_FILE, KATAGATE_KAFKA_CONFIG).
        assert text.startswith("/"), f"{where}: {name}={text[:20]}..."
        assert "\n" not in text, f"{where}: {name}"


def test_no_service_or_pod_puts_a_secret_in_an_environment_variable():
    for name, service in compose()["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            check_variable(f"compose {name}", variable, value)
        if service.get("image", "").startswith("apache/kafka"):
            assert not any("PASSWORD" in v or "SSL" in v for v in service["environment"])
    checked = 0
    for path, doc in [*manifests(), *[(Path(n), d) for n, d in k8s_workloads()]]:
        if doc["kind"] == "ConfigMap":
            for variable, value in doc["data"].items():
                check_variable(path.name, variable, value)
                checked += 1
        if doc["kind"] == "Secret":
            pytest.fail(f"{path.name}: a Secret in the manifests (its value in git)")
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for entry in container.get("env", []):
                assert "secretKeyRef" not in entry.get("valueFrom", {}), (
                    f"{path.name}: {entry['name']} from a Secret into the environment")
                check_variable(path.name, entry["name"], entry.get("value", ""))
                checked += 1
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, f"{path.name}: a Secret as environment"
    assert checked > 20
    # The checks can fail: a password, a token value, a Secret reference.
    with pytest.raises(AssertionError):
        check_variable("x", "KATAGATE_CONSOLE_ADMIN_PASSWORD", "hunter2")
    with pytest.raises(AssertionError):
        check_variable("x", "KATAGATE_PROJECTOR_TOKEN", "kgp_abc")
    with pytest.raises(AssertionError):
        check_variable("x", "EXTRA", "sasl.password=abc")


# -- each stage's own principal -----------------------------------------------------------------

def test_every_compose_service_mounts_only_its_own_principals_file():
    data = compose()
    files = {name: spec["file"] for name, spec in data["secrets"].items()}
    assert all(f.startswith("./secrets/") for f in files.values())
    principal_secrets = {f"kafka-{p}" for p in PRINCIPALS}
    assert principal_secrets <= set(files)
    seen = set()
    for name, service in data["services"].items():
        mounted = {s["source"]: s["target"] for s in service.get("secrets", [])}
        own = {source for source in mounted if source in principal_secrets}
        if name == "kafka-users":  # makes every SCRAM user: reads every password
            assert own == principal_secrets
            continue
        if not service.get("image", "").startswith("katagate"):
            assert not own, name
            continue
        commands = service_commands(service)
        users = {COMMAND_PRINCIPAL[c] for c in commands if c not in NO_KAFKA}
        if not users:
            assert not own, f"{name} needs no Kafka credential"
            assert set(commands) <= NO_KAFKA, name
            continue
        (principal,) = users
        assert own == {f"kafka-{principal}"}, f"{name} runs as {principal}, mounts {own}"
        config = service["environment"]["KATAGATE_KAFKA_CONFIG"]
        assert config == "/run/secrets/" + mounted[f"kafka-{principal}"], name
        assert mounted["kafka-ca"] == "kafka-ca.pem", name
        seen.add(name)
    assert seen == {"ingest", "scanner", "decider", "projector", "console", "kafka-setup",
                    "kata-settings"}


def test_the_setup_job_runs_as_admin_before_every_stage():
    services = compose()["services"]
    setup = services["kafka-setup"]
    assert service_commands(setup) == [("topics", "create"), ("acls", "apply")]
    assert setup["restart"] == "no"
    assert setup["depends_on"]["kafka-users"]["condition"] == "service_completed_successfully"
    assert services["kafka-users"]["restart"] == "no"
    for name, service in services.items():
        if COMMAND_PRINCIPAL.get(next(iter(service_commands(service)), ("", ""))) and (
                name != "kafka-setup"):
            assert service["depends_on"]["kafka-setup"]["condition"] == (
                "service_completed_successfully"), name


def k8s_workloads() -> list[tuple[str, dict[str, Any]]]:
    """The kustomization's workloads, and the Jobs run by hand (k8s/jobs/)."""
    docs = [(path.name, doc) for path, doc in manifests()]
    docs += [(f"jobs/{path.name}", doc) for path in sorted((K8S / "jobs").glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text()) if doc]
    return [(name, doc) for name, doc in docs
            if doc["kind"] in ("Deployment", "StatefulSet", "Job")]


def test_the_jobs_run_by_hand_are_valid_kubernetes():
    import kubernetes_validate

    jobs = [doc for name, doc in k8s_workloads() if name.startswith("jobs/")]
    assert jobs
    for doc in jobs:
        for version in ("1.29.0", "1.33.0"):
            kubernetes_validate.validate(doc, version, strict=True)


def k8s_principal(pod: dict[str, Any]) -> str:
    users = {COMMAND_PRINCIPAL[tuple(c["args"][:2])] for c in
             [*pod.get("initContainers", []), *pod["containers"]] if "args" in c}
    (principal,) = users
    return str(principal)


def test_every_pod_mounts_only_its_own_principals_secret_as_its_user():
    config = next(d for _, d in manifests() if d["kind"] == "ConfigMap")["data"][
        "KATAGATE_KAFKA_CONFIG"]
    folder = config.rsplit("/", 1)[0]
    ran = set()
    for _name, doc in k8s_workloads():
        pod = doc["spec"]["template"]["spec"]
        principal = k8s_principal(pod)
        ran.add(principal)
        volumes = {v["name"]: v for v in pod["volumes"]}
        kafka_secrets = {v["secret"]["secretName"] for v in volumes.values()
                         if v.get("secret", {}).get("secretName", "").startswith("katagate-kafka-")}
        assert kafka_secrets == {f"katagate-kafka-{principal}", "katagate-kafka-ca"}, principal
        assert volumes["kafka-secret"]["secret"] == {
            "secretName": f"katagate-kafka-{principal}", "defaultMode": 0o400}
        assert volumes["kafka-config"]["emptyDir"]["medium"] == "Memory"
        # The pod's user owns the copy; fsGroup lets it read the Secret (made 0440 by it).
        security = pod["securityContext"]
        assert security["runAsUser"] == security["fsGroup"] == 10001
        assert security["runAsNonRoot"] is True
        copy = next(c for c in pod["initContainers"] if c["name"] == "kafka-config")
        assert copy["command"] == ["install", "-m", "0600", "/secret/client.properties", config]
        assert "securityContext" not in copy  # as the pod's user, not root
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
            if container is copy:
                assert mounts == {"kafka-secret": "/secret", "kafka-config": folder}
                continue
            assert "kafka-secret" not in mounts, container["name"]
            if "args" in container:  # a katagate command: reads the copy and the CA
                assert mounts["kafka-config"] == folder, container["name"]
                assert mounts["kafka-ca"] == "/etc/katagate/kafka-ca", container["name"]
                assert {"configMapRef": {"name": "katagate"}} in container["envFrom"]
        # The first init container makes the copy, before anything reads it.
        assert pod["initContainers"][0] is copy
    assert ran == {"admin", "ingest", "scanner", "decider", "projector"}


def test_the_k8s_setup_job_creates_topics_then_applies_acls_as_admin():
    job = next(doc for _, doc in manifests() if doc["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    steps = [c["args"] for c in pod["initContainers"] if "args" in c] + [
        c["args"] for c in pod["containers"]]
    assert steps == [["topics", "create"], ["acls", "apply"]]


def test_the_projector_token_reaches_the_console_as_a_file():
    services = compose()["services"]
    console, projector = services["console"], services["projector"]
    assert {"source": "projector-token", "target": "projector-token"} in console["secrets"]
    assert console["environment"]["KATAGATE_CONSOLE_PROJECTOR_TOKEN_FILE"] == (
        "/run/secrets/projector-token")
    assert {"source": "projector-tokens", "target": "projector-tokens.json"} in (
        projector["secrets"])
    assert projector["environment"]["KATAGATE_PROJECTOR_TOKENS_FILE"] == (
        "/run/secrets/projector-tokens.json")
    # The console asks http://projector:8080, so the projector accepts that Host.
    url = console["command"][console["command"].index("--projector-url") + 1]
    assert yaml.safe_load(projector["environment"]["KATAGATE_PROJECTOR_ALLOWED_HOSTS"])[0] == (
        url.split("//")[1].split(":")[0])
    # On Kubernetes: the digests from a Secret; the kubelet's probes send an accepted Host.
    data = next(d for _, d in manifests() if d["kind"] == "ConfigMap")["data"]
    deployment = next(d for _, d in manifests()
                      if d["kind"] == "Deployment" and d["metadata"]["name"] == "projector")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    tokens = next(m for m in container["volumeMounts"] if m["name"] == "tokens")
    assert data["KATAGATE_PROJECTOR_TOKENS_FILE"].startswith(tokens["mountPath"] + "/")
    assert {"name": "tokens", "secret": {"secretName": "katagate-projector-tokens",
                                         "defaultMode": 0o400}} in pod["volumes"]
    allowed = yaml.safe_load(data["KATAGATE_PROJECTOR_ALLOWED_HOSTS"])
    for probe in ("readinessProbe", "livenessProbe"):
        headers = container[probe]["httpGet"]["httpHeaders"]
        assert {"name": "Host", "value": "localhost"} in headers
        assert "localhost" in allowed


def test_metrics_are_scraped_on_their_own_listeners():
    scrape = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    ports = {}
    for job in scrape["scrape_configs"]:
        if "dns_sd_configs" in job:
            ports[job["dns_sd_configs"][0]["names"][0]] = str(job["dns_sd_configs"][0]["port"])
        else:
            ports[job["static_configs"][0]["targets"][0].split(":")[0]] = (
                job["static_configs"][0]["targets"][0].split(":")[1])
    services = compose()["services"]
    for name, port in ports.items():
        env = services[name]["environment"]
        assert env[f"KATAGATE_{name.upper()}_METRICS_PORT"] == port, name
        if name != "ingest":  # ingest's metrics host is 0.0.0.0 by its own default
            assert env[f"KATAGATE_{name.upper()}_METRICS_HOST"] == "0.0.0.0", name  # noqa: S104


# -- Strimzi -------------------------------------------------------------------------------------

RESOURCE = {"topic": "topic", "group": "group", "transactionalId": "transactional_id",
            "cluster": "cluster"}
PATTERN = {"literal": "literal", "prefix": "prefixed"}


def strimzi_grants(documents: list[dict[str, Any]]) -> set[Grant]:
    found = set()
    for user in documents:
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            assert acl.get("type", "allow") == "allow"
            assert acl["host"] == "*"
            for operation in acl["operations"]:
                name = resource.get("name", "kafka-cluster")
                pattern = PATTERN[resource.get("patternType", "literal")]
                found.add(Grant(user["metadata"]["name"], RESOURCE[resource["type"]], name,
                                pattern, re.sub(r"(?<!^)([A-Z])", r"_\1", operation).upper()))
    return found


def test_the_strimzi_users_are_exactly_the_grant_table():
    documents = [d for d in yaml.safe_load_all(STRIMZI.read_text()) if d]
    config = next(d for _, d in manifests() if d["kind"] == "ConfigMap")["data"]
    assert [d["metadata"]["name"] for d in documents] == list(PRINCIPALS)
    for user in documents:
        assert user["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert user["kind"] == "KafkaUser"
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        assert user["metadata"]["labels"]["strimzi.io/cluster"]
    assert strimzi_grants(documents) == set(grants(config["KATAGATE_TOPIC_PREFIX"]))
    # A grant more or less is a drift, and the comparison sees it.
    documents[0]["spec"]["authorization"]["acls"].pop()
    assert strimzi_grants(documents) != set(grants(config["KATAGATE_TOPIC_PREFIX"]))


def test_the_strimzi_users_file_is_what_its_generator_writes():
    generator = load(K8S / "strimzi_users.py")
    assert STRIMZI.read_text() == generator.render(), (
        "regenerate: python deploy/k8s/strimzi_users.py > deploy/k8s/strimzi-users.yaml")


# -- the compose secrets -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("secrets")
    load(DEPLOY / "compose" / "make_secrets.py").make(folder)
    return folder


def test_make_secrets_makes_every_file_compose_mounts(made: Path):
    for name, spec in compose()["secrets"].items():
        path = made / spec["file"].removeprefix("./secrets/")
        assert path.is_file(), name
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o444 if name == "kafka-ca" else 0o400), f"{name}: {mode:o}"


def test_the_node_stores_open_with_their_password_and_name_each_node(made: Path):
    ca = x509.load_pem_x509_certificate((made / "ca.pem").read_bytes())
    nodes = [s for s in compose()["services"].values()
             if s.get("image", "").startswith("apache/kafka")]
    for number, node in enumerate(nodes, start=1):
        password = parse_properties((made / f"kafka-{number}-store.properties").read_text(),
                                    "store")["password"]
        key, cert, chain = pkcs12.load_key_and_certificates(
            (made / f"kafka-{number}.p12").read_bytes(), password.encode())
        assert key is not None
        assert cert is not None
        # CN=broker (User:broker, a super user) and the name the others connect to.
        assert cert.subject.rfc4514_string() == "CN=broker,O=katagate"
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == [node["hostname"]]
        cert.verify_directly_issued_by(ca)
        assert chain == [ca]
    admin = x509.load_pem_x509_certificate((made / "admin-tls.pem").read_bytes())
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"
    admin.verify_directly_issued_by(ca)


def test_each_principals_file_is_a_scram_client_of_the_mounted_ca(made: Path):
    scram = load(DEPLOY / "compose" / "scram_users.py")
    users = scram.credentials(made)  # what kafka-users reads, checked
    assert set(users) == set(PRINCIPALS)
    passwords = set()
    for principal, properties in users.items():
        assert properties["security.protocol"] == "SASL_SSL"
        assert properties["sasl.mechanism"] == "SCRAM-SHA-512"
        assert properties["sasl.username"] == principal
        assert properties["ssl.ca.location"] == "/run/secrets/kafka-ca.pem"
        assert "bootstrap.servers" not in properties  # KAFKA_BOOTSTRAP_SERVERS gives it
        passwords.add(properties["sasl.password"])
    assert len(passwords) == len(PRINCIPALS)
    assert min(map(len, passwords)) >= 40


def test_the_console_token_opens_the_projector(made: Path):
    token = (made / "projector-token").read_text().strip()
    record = token_file(made / "projector-tokens.json").match(token)
    assert record is not None
    assert record.name == "console"


def test_a_second_run_keeps_every_secret(made: Path):
    before = {p.name: p.read_bytes() for p in made.iterdir()}
    owners = load(DEPLOY / "compose" / "make_secrets.py").make(made)
    assert {p.name: p.read_bytes() for p in made.iterdir()} == before
    assert {p.name for p in owners} == set(before)


def test_no_secret_reaches_the_image_or_git():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert "COPY . " not in final
    assert "COPY --from=wheel /wheels" in final
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    root = (ROOT / ".dockerignore").read_text().splitlines()
    assert set(root) <= set(ignored)
    assert "deploy/compose/secrets" in ignored
    assert (DEPLOY / "compose" / "secrets" / ".gitignore").read_text().splitlines()[1:] == [
        "*", "!.gitignore"]
    assert COMPOSE.parent / "secrets" == DEPLOY / "compose" / "secrets"
