"""The systemd units (deploy/systemd) read as files, without systemd: one unit per stage process
of docs/ARCHITECTURE.md, grouped by katagate.target; each hardened, run as the dedicated user,
restarted on failure, reading the one configuration file, given its secrets as credentials,
never in its environment, and blind to the other stages' state folders. `systemd-analyze
verify` itself: tests/integration/test_systemd_verify.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
TARGET = SYSTEMD / "katagate.target"

# Directive -> the value every stage unit must have.
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "User": "katagate",
    "Group": "katagate",
    "StateDirectory": "katagate",
    "Restart": "on-failure",
    "Type": "simple",
    "Environment": "KATAGATE_CONFIG=/etc/katagate/katagate.toml",
}
# A value that looks like a secret itself rather than naming where one is.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN(?!_FILE)|(?<!_)KEY(?!_DIR|_FILE)", re.I)


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections; a key given more than once (Environment=) keeps every value."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def stage_commands() -> set[str]:
    """The stage processes of the architecture's table: `katagate ingest run`, ..."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    return set(re.findall(r"`katagate ([a-z ]+ run)`", text))


def units() -> dict[str, dict[str, dict[str, list[str]]]]:
    found = {path.name: parse(path) for path in sorted(SYSTEMD.glob("katagate-*.service"))}
    assert len(found) == len(stage_commands()), f"units in deploy/systemd: {sorted(found)}"
    return found


def test_every_stage_process_has_a_unit_that_runs_it_as_the_architecture_names_it():
    commands = {unit["Service"]["ExecStart"][0].removeprefix("/usr/bin/katagate ")
                for unit in units().values()}
    assert commands == stage_commands()
    assert len(stage_commands()) == 6


def test_the_target_wants_every_stage_and_every_stage_is_part_of_and_wanted_by_it():
    target = parse(TARGET)
    wanted = set(" ".join(target["Unit"]["Wants"]).split())
    assert wanted == set(units())
    assert target["Install"]["WantedBy"] == ["multi-user.target"]
    for name, unit in units().items():
        assert unit["Unit"]["PartOf"] == ["katagate.target"], name
        assert unit["Install"]["WantedBy"] == ["katagate.target"], name


@pytest.mark.parametrize("name", sorted(p.name for p in SYSTEMD.glob("katagate-*.service")))
def test_each_unit_is_hardened_restarted_and_run_as_the_dedicated_user(name):
    service = parse(SYSTEMD / name)["Service"]
    for directive, value in HARDENING.items():
        assert value in service.get(directive, []), f"{name}: {directive}={value} missing"
    assert service["RestartSec"], name
    unit = parse(SYSTEMD / name)["Unit"]
    assert unit["StartLimitIntervalSec"], name
    assert unit["StartLimitBurst"], name


def test_only_ingest_keeps_a_capability_and_that_one_is_binding_port_25():
    for name, unit in units().items():
        service = unit["Service"]
        expected = ["CAP_NET_BIND_SERVICE"] if name == "katagate-ingest.service" else [""]
        assert service["CapabilityBoundingSet"] == expected, name
        assert service["AmbientCapabilities"] == expected, name


def test_secrets_come_as_credentials_and_the_environment_only_names_where_they_are():
    for name, unit in units().items():
        service = unit["Service"]
        credentials = dict(c.split(":", 1) for c in service["LoadCredential"])
        assert credentials["kafka.properties"].startswith("/etc/katagate/credentials/"), name
        environment = dict(e.split("=", 1) for e in service["Environment"])
        assert environment["KATAGATE_KAFKA_CONFIG"] == "%d/kafka.properties", name
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                # Only a file the unit's credentials hold may be named by a secret's setting.
                assert value.startswith("%d/"), (name, key)
                assert value.removeprefix("%d/") in credentials, (name, key)


def test_the_dedicated_user_and_its_folders_are_declared():
    sysusers = (SYSTEMD / "katagate.sysusers.conf").read_text()
    assert re.search(r"^u katagate - .* /var/lib/katagate /usr/sbin/nologin$", sysusers, re.M)
    tmpfiles = (SYSTEMD / "katagate.tmpfiles.conf").read_text()
    assert re.search(r"^d /var/lib/katagate 0700 katagate katagate -$", tmpfiles, re.M)
    assert re.search(r"^d /etc/katagate/credentials 0700 root root -$", tmpfiles, re.M)


# The folders of /var/lib/katagate and the unit whose state each is (ingest and the decider
# keep none); every unit runs as the same user, so only the mount namespace keeps them apart.
STATE_FOLDERS = {"scanner": "katagate-scanner.service", "projector": "katagate-projector.service",
                 "console": "katagate-console.service",
                 "audit": "katagate-audit-checkpoint.service"}


def test_no_unit_can_read_another_stages_state_folder():
    # Given every stage runs as the user katagate over one StateDirectory, When one is taken
    # over (ingest parses the internet's mail), Then the others' keys are out of its sight
    for name, unit in units().items():
        hidden = set(" ".join(unit["Service"].get("InaccessiblePaths", [])).split())
        others = {f"-/var/lib/katagate/{folder}" for folder, owner in STATE_FOLDERS.items()
                  if owner != name}
        assert hidden == others, name
        environment = " ".join(unit["Service"]["Environment"])
        for folder, owner in STATE_FOLDERS.items():
            if owner == name:
                assert f"/var/lib/katagate/{folder}" in environment, name
