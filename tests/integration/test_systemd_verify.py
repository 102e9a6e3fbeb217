"""The systemd units checked by the real `systemd-analyze verify` (Debian's `systemd`, installed
by scripts/system-packages), and each unit's ExecStart a command katagate has.

verify needs ExecStart's program to exist, and katagate is not installed in /usr/bin here: the
units are verified from a copy with /usr/bin/katagate rewritten to this environment's katagate.
verify reports a directive it does not know or cannot parse as a warning with exit status 0,
so any output fails the test."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from katagate.cli import build_parser
from tests.tools import require_tool
from tests.unit.test_systemd_units import SYSTEMD, parse

UNITS = [*sorted(SYSTEMD.glob("katagate-*.service")), SYSTEMD / "katagate.target"]


def katagate_program() -> str:
    found = shutil.which("katagate", path=str(Path(sys.executable).parent))
    assert found, "the katagate console script next to this Python"
    return found


def verify(folder: Path, sources: list[Path]) -> subprocess.CompletedProcess[str]:
    program = katagate_program()
    for source in sources:
        (folder / source.name).write_text(
            source.read_text().replace("/usr/bin/katagate", program))
    analyze = require_tool("systemd-analyze", package="systemd")
    return subprocess.run([analyze, "verify", *(s.name for s in sources)], cwd=folder,
                          capture_output=True, text=True, timeout=120, check=False)


def test_every_unit_and_the_target_pass_systemd_analyze_verify_without_a_warning(tmp_path):
    result = verify(tmp_path, UNITS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_a_misspelt_directive_makes_verify_speak(tmp_path):
    """Given a unit with a typo, when verified, then the output names it (the test above can
    fail)."""
    broken = tmp_path / "src" / "katagate-scanner.service"
    broken.parent.mkdir()
    broken.write_text((SYSTEMD / broken.name).read_text()
                      .replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = verify(tmp_path, [broken])
    assert "Unknown key 'NoNewPrivilege'" in result.stderr


def test_each_units_command_is_one_katagate_has():
    assert len(UNITS) == 7
    for path in UNITS[:-1]:
        argv = shlex.split(parse(path)["Service"]["ExecStart"][0])
        args = build_parser().parse_args(argv[1:])  # an unknown command exits 2
        assert callable(args.run), path.name


# Run in a child process under the kernel's memory-deny-write-execute (PR_SET_MDWE, Linux 6.3;
# the rule MemoryDenyWriteExecute=yes enforces with seccomp): what katagate's native code does
# at run time must not need writable executable memory.
MDWE_CHILD = r"""
import ctypes, mmap, socket, ssl, threading, datetime as dt
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    raise SystemExit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    raise SystemExit("writable executable memory was allowed: the rule is not on")
except PermissionError:
    pass
import confluent_kafka
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
import audit.checkpointer, console.run, decider.apply, ingest.run, projector.run
import scanner.service
Ed25519PrivateKey.generate().sign(b"checkpoint")
producer = confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:1"})
producer.produce("t", b"x")
producer.poll(0.1)
# A TLS handshake, as the scanner's with the Central Node and ingest's STARTTLS.
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = dt.datetime.now(dt.UTC)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
import tempfile, os
folder = tempfile.mkdtemp()
pem = os.path.join(folder, "c.pem")
with open(pem, "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(pem)
client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_ctx.load_verify_locations(pem)
a, b = socket.socketpair()
t = threading.Thread(target=lambda: server_ctx.wrap_socket(a, server_side=True).recv(1))
t.start()
client_ctx.wrap_socket(b, server_hostname="localhost").sendall(b"x")
t.join()
print("ok")
"""


def test_katagates_native_code_runs_without_writable_executable_memory():
    """Given the kernel's memory-deny-write-execute on, when the stages' modules load, a librdkafka
    client starts, an Ed25519 checkpoint is signed and a TLS handshake made, then all succeed
    (so MemoryDenyWriteExecute=yes stays on in every unit)."""
    result = subprocess.run([sys.executable, "-c", MDWE_CHILD], capture_output=True, text=True,
                            timeout=120, check=False)
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or later)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
