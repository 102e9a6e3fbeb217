"""The KATA emulator as a user runs it: `python -m katagate.kata_emulator serve` in a subprocess, a
sensor speaking HTTPS with a client certificate (stdlib ssl + http.client), the CLI in between.

The helpers here (certificates, the server process, the sensor client) are reused by the
console test.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def fingerprint_of(cert: x509.Certificate) -> str:
    """Computed here, independently of the emulator: SHA-256 over the SPKI, "AB:CD:..."."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return ":".join(f"{b:02X}" for b in hashlib.sha256(spki).digest())


@dataclass(frozen=True)
class ClientCert:
    cert_path: Path
    key_path: Path
    fingerprint: str


def make_client_cert(folder: Path, name: str) -> ClientCert:
    """A self-signed sensor certificate, as the gateway generates one."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ClientCert(cert_path, key_path, fingerprint_of(cert))


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def emulator(state: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "katagate.kata_emulator", *args, "--state", str(state)],
        input=stdin, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
        env=env(),
    )


class EmulatorProcess:
    """`kata-emulator serve` on a free port; waits for its one ready line."""

    def __init__(self, state: Path, log: Path, *extra: str) -> None:
        self.state, self.log, self.extra = state, log, extra
        self.process: subprocess.Popen[str] | None = None
        self.port, self.fingerprint = 0, ""

    def start(self) -> EmulatorProcess:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "katagate.kata_emulator", "serve",
                 "--state", str(self.state), "--port", "0", *self.extra],
                stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT, env=env(),
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline().strip() if ready else ""
        prefix = "kata-emulator listening on https://127.0.0.1:"
        assert line.startswith(prefix), f"no ready line: {line!r}\n{self.log.read_text()}"
        port, _, rest = line[len(prefix):].partition(" fingerprint=")
        self.port, self.fingerprint = int(port), rest
        return self

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=15)
        self.process.stdout.close()  # type: ignore[union-attr]
        return code


class Sensor:
    """A KSMG sensor: one kept-alive HTTPS connection with its client certificate."""

    def __init__(self, port: int, sensor_id: str, cert: ClientCert) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the Central Node's key is pinned by fingerprint
        context.load_cert_chain(cert.cert_path, cert.key_path)
        self.port, self.sensor_id, self.context = port, sensor_id, context
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=20)
        self.base = f"/kata/scanner/v1/sensors/{sensor_id}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        self.conn.request(method, self.base + path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        return response.status, response.read()

    def json(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, object]:
        status, raw = self.request(method, path, body, headers)
        return status, json.loads(raw) if raw else None

    def submit(self, scan_id: str, content: bytes) -> tuple[int, object]:
        boundary = uuid.uuid4().hex
        parts = [("scanId", scan_id.encode(), ""), ("objectType", b"file", ""),
                 ("content", content, '; filename="message.eml"')]
        body = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'
            .encode() + value + b"\r\n" for name, value, extra in parts
        ) + f"--{boundary}--\r\n".encode()
        return self.json("POST", "/scans?sensorInstanceId=node1", body,
                         {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def wait_state(self, scan_id: str, want: str, within: float = 10) -> str:
        deadline, state = time.monotonic() + within, ""
        while time.monotonic() < deadline:
            status, body = self.json("GET", "/scans/state?state=detect,not%20detected,"
                                            "processing,timeout,error")
            states = {s["scanId"]: s["state"] for s in body["scans"]} if status == 200 else {}
            state = states.get(scan_id, "")
            if state == want:
                return state
            time.sleep(0.1)
        raise AssertionError(f"scan {scan_id} is {state!r}, not {want!r}")

    def server_fingerprint(self) -> str:
        """The Central Node's key as this sensor sees it on a new connection."""
        self.conn.close()
        self.conn.connect()
        assert self.conn.sock is not None
        der = self.conn.sock.getpeercert(binary_form=True)
        assert der is not None
        return fingerprint_of(x509.load_der_x509_certificate(der))

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def server(tmp_path):
    process = EmulatorProcess(tmp_path / "state", tmp_path / "emulator.log").start()
    yield process
    if process.process and process.process.poll() is None:
        process.stop()


def accepted_sensor(server: EmulatorProcess, tmp_path: Path, sensor_id: str = "ksmg1"):
    sensor = Sensor(server.port, sensor_id, make_client_cert(tmp_path / "certs", sensor_id))
    assert sensor.json("GET", "/scans/state")[0] == 401
    assert emulator(server.state, "sensors", "accept", sensor_id).returncode == 0
    return sensor


def mime_with_attachment(payload: bytes) -> bytes:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.org", "b@y.org", "invoice"
    message.set_content("please see the attachment")
    message.add_attachment(payload, maintype="application", subtype="octet-stream",
                           filename="eicar.com")
    return message.as_bytes()


def test_a_new_sensor_waits_for_acceptance_then_scans(server, tmp_path):
    cert = make_client_cert(tmp_path / "certs", "ksmg1")
    sensor = Sensor(server.port, "ksmg1", cert)
    assert sensor.server_fingerprint() == server.fingerprint
    assert sensor.json("GET", "/scans/state") == (401, {"error": "integration request pending"})

    listing = emulator(server.state, "sensors", "list")
    line = next(x for x in listing.stdout.splitlines() if "ksmg1" in x)
    assert line.startswith("*")
    assert cert.fingerprint in line
    assert "127.0.0.1" in line
    as_json = json.loads(emulator(server.state, "sensors", "list", "--json").stdout)
    assert (as_json[0]["status"], as_json[0]["fingerprint"]) == ("pending", cert.fingerprint)
    assert sensor.json("GET", "/scans/state")[1] == {"error": "integration request pending"}

    accept = emulator(server.state, "sensors", "accept", "ksmg1")
    assert accept.returncode == 0, accept.stderr
    line = next(x for x in emulator(server.state, "sensors", "list").stdout.splitlines()
                if "ksmg1" in x)
    assert not line.startswith("*")

    assert sensor.json("GET", "/scans/state") == (404, {"error": "no scan results"})
    assert sensor.submit("eicar1", mime_with_attachment(EICAR)) == (200, {"scanId": "eicar1"})
    assert sensor.submit("clean1", b"Subject: hi\r\n\r\nnothing to see") == (
        200, {"scanId": "clean1"})
    sock = sensor.conn.sock
    sensor.wait_state("eicar1", "detect")
    sensor.wait_state("clean1", "not detected")
    assert sensor.conn.sock is sock  # one kept-alive connection throughout

    status, raw = sensor.request("GET", "/scans/state?state=timeout")
    assert (status, raw) == (204, b"")
    status, detects = sensor.json("GET", "/detects?detect_type=am,sb,yara,url_reputation,ids"
                                         "&limit=10")
    assert status == 200
    assert detects == {"detects": [{
        "scanId": "eicar1", "detectType": "am", "threatName": "EICAR-Test-File",
        "details": "EICAR test string in attachment 'eicar.com'"}], "token": None}

    assert sensor.json("DELETE", "/scans/eicar1") == (200, {"scanId": "eicar1", "deleted": True})
    assert sensor.json("DELETE", "/scans/eicar1")[0] == 404
    assert sensor.json("DELETE", "/scans") == (200, {"deleted": 1})
    assert sensor.json("GET", "/scans/state")[0] == 404
    sensor.close()


def test_client_without_certificate_cannot_connect(server):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    def first_request() -> None:
        conn.request("GET", "/kata/scanner/v1/sensors/x/scans/state")
        conn.getresponse().read()

    # TLS 1.3 reports the missing certificate on the first read, TLS 1.2 in the handshake.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        first_request()
    listing = emulator(server.state, "sensors", "list", "--json")
    assert json.loads(listing.stdout) == []


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_with_any_self_signed_certificate(server, tmp_path, version):
    sensor = Sensor(server.port, f"v{version.value}", make_client_cert(tmp_path, "any"))
    sensor.context.minimum_version = sensor.context.maximum_version = version
    assert sensor.json("GET", "/scans/state")[0] == 401
    assert sensor.conn.sock.version() == version.name.replace("_", ".")


def test_sensors_show_and_remove(server, tmp_path):
    cert = make_client_cert(tmp_path, "ksmg9")
    Sensor(server.port, "ksmg9", cert).json("GET", "/scans/state")
    shown = emulator(server.state, "sensors", "show", "ksmg9")
    assert shown.returncode == 0
    assert cert.fingerprint in shown.stdout
    assert server.fingerprint in shown.stdout
    assert "-----BEGIN CERTIFICATE-----" in shown.stdout
    assert emulator(server.state, "sensors", "remove", "ksmg9").returncode == 0
    missing = emulator(server.state, "sensors", "show", "ksmg9")
    assert missing.returncode == 1
    assert "no sensor 'ksmg9'" in missing.stderr
    never = emulator(tmp_path / "nothing-here", "sensors", "list")
    assert never.returncode == 1
    assert "no emulator state" in never.stderr


def test_faults_set_while_serving(server, tmp_path):
    sensor = accepted_sensor(server, tmp_path)
    state = server.state

    assert emulator(state, "faults", "set", "--max-object-bytes", "100").returncode == 0
    status, body = sensor.submit("big1", b"x" * 101)
    assert status == 413
    assert "100" in body["error"]
    # a declared body far over the limit is refused before it is sent
    sensor.conn.putrequest("POST", sensor.base + "/scans?sensorInstanceId=node1")
    sensor.conn.putheader("Content-Type", "multipart/form-data; boundary=b")
    sensor.conn.putheader("Content-Length", str(10 * 2**30))
    sensor.conn.endheaders()
    response = sensor.conn.getresponse()
    assert (response.status, response.getheader("Connection")) == (413, "close")
    response.read()
    sensor.conn.close()

    assert emulator(state, "faults", "set", "--latency", "60", "--concurrency-limit", "1",
                    "--max-object-bytes", "1000").returncode == 0
    assert sensor.submit("slow1", b"a")[0] == 200
    status, body = sensor.submit("slow2", b"b")
    assert status == 429
    assert "retry later" in body["error"]
    assert sensor.submit("slow1", b"a") == (200, {"scanId": "slow1"})  # known: idempotent

    emulator(state, "faults", "reset")
    assert emulator(state, "faults", "set", "--error-rate", "1").returncode == 0
    assert sensor.json("GET", "/scans/state") == (500, {"error": "internal error (injected fault)"})

    emulator(state, "faults", "reset")
    assert emulator(state, "faults", "set", "--malformed-rate", "1").returncode == 0
    status, raw = sensor.request("GET", "/scans/state")
    assert status == 200
    with pytest.raises(ValueError):  # noqa: PT011 - any JSON decode error
        json.loads(raw)

    emulator(state, "faults", "reset")
    assert emulator(state, "faults", "set", "--hang-rate", "1", "--hang-seconds", "1.5",
                    "--timeout-rate", "1").returncode == 0
    began = time.monotonic()
    assert sensor.submit("late1", b"c")[0] == 200
    assert time.monotonic() - began >= 1.5
    emulator(state, "faults", "reset")
    assert sensor.wait_state("late1", "timeout")
    shown = json.loads(emulator(state, "faults", "show", "--json").stdout)
    assert shown["error_rate"] == 0
    assert shown["latency"] == "0"


def test_fault_options_are_validated(tmp_path):
    state = tmp_path / "state"
    result = emulator(state, "faults", "set", "--error-rate", "1.5")
    assert result.returncode == 2
    assert "--error-rate must be a number in 0..1" in result.stderr
    result = emulator(state, "faults", "set", "--latency", "uniform:5:1")
    assert result.returncode == 2
    assert "--latency must be" in result.stderr
    result = emulator(state, "faults", "set", "--concurrency-limit", "-1")
    assert result.returncode == 2
    assert "--concurrency-limit" in result.stderr


def test_rotated_key_is_served_without_restart(server, tmp_path):
    sensor = accepted_sensor(server, tmp_path)
    before = sensor.server_fingerprint()
    assert before == server.fingerprint
    rotated = emulator(server.state, "rotate-key")
    assert rotated.returncode == 0, rotated.stderr
    after = sensor.server_fingerprint()
    assert after != before
    assert after == emulator(server.state, "fingerprint").stdout.strip()
    assert sensor.json("GET", "/scans/state")[0] == 404  # still accepted on the new key


def test_another_certificate_for_a_known_sensor_is_refused(server, tmp_path):
    accepted_sensor(server, tmp_path, "ksmg1")
    impostor = Sensor(server.port, "ksmg1", make_client_cert(tmp_path / "other", "ksmg1"))
    assert impostor.json("GET", "/scans/state") == (
        401, {"error": "certificate does not match the registered sensor"})
    listing = json.loads(emulator(server.state, "sensors", "list", "--json").stdout)
    assert [(s["sensorId"], s["status"]) for s in listing] == [("ksmg1", "accepted")]


def test_rejected_sensor_gets_401_rejected(server, tmp_path):
    sensor = Sensor(server.port, "ksmg2", make_client_cert(tmp_path / "certs", "ksmg2"))
    assert sensor.json("GET", "/detects")[0] == 401
    assert emulator(server.state, "sensors", "reject", "ksmg2").returncode == 0
    assert sensor.json("GET", "/detects") == (401, {"error": "integration request rejected"})
    unknown = emulator(server.state, "sensors", "accept", "nobody")
    assert unknown.returncode == 1
    assert "no sensor 'nobody'" in unknown.stderr


def test_state_survives_a_restart(server, tmp_path):
    sensor = accepted_sensor(server, tmp_path)
    assert sensor.submit("keep1", EICAR)[0] == 200
    sensor.wait_state("keep1", "detect")
    sensor.close()
    fingerprint = server.fingerprint
    assert server.stop() == 0

    server.start()
    assert server.fingerprint == fingerprint
    again = Sensor(server.port, "ksmg1", sensor_cert(tmp_path, "ksmg1"))
    assert again.json("GET", "/scans/state") == (
        200, {"scans": [{"scanId": "keep1", "state": "detect"}]})


def sensor_cert(tmp_path: Path, name: str) -> ClientCert:
    folder = tmp_path / "certs"
    cert = x509.load_pem_x509_certificate((folder / f"{name}.crt").read_bytes())
    return ClientCert(folder / f"{name}.crt", folder / f"{name}.key", fingerprint_of(cert))


def test_rules_file_gives_sha256_and_yara_detects(tmp_path):
    rules = tmp_path / "rules.json"
    indicator = b"a known bad file"
    rules.write_text(json.dumps({
        "sha256": [{"sha256": hashlib.sha256(indicator).hexdigest(), "type": "sb",
                    "name": "Sandbox.Bad"}],
        "patterns": [{"regex": "evil[0-9]+", "name": "Evil.Pattern"}],
    }))
    process = EmulatorProcess(tmp_path / "state", tmp_path / "log", "--rules", str(rules))
    process.start()
    try:
        sensor = accepted_sensor(process, tmp_path)
        sensor.submit("r1", indicator)
        sensor.submit("r2", b"... evil42 ...")
        sensor.wait_state("r2", "detect")
        detects = sensor.json("GET", "/detects")[1]["detects"]
        assert [(d["scanId"], d["detectType"], d["threatName"]) for d in detects] == [
            ("r1", "sb", "Sandbox.Bad"), ("r2", "yara", "Evil.Pattern")]
    finally:
        process.stop()
