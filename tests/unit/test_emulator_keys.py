"""The emulator's server key: fingerprint format, private file, rotation."""

from __future__ import annotations

import hashlib
import re
import stat

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from katagate.kata_emulator.keys import (
    key_path,
    load_server_key,
    rotate_server_key,
    spki_fingerprint,
)

FINGERPRINT = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){31}")


def test_fingerprint_is_sha256_of_spki_as_uppercase_colon_hex(tmp_path):
    server_key = load_server_key(tmp_path)
    fingerprint = spki_fingerprint(server_key.cert)
    assert len(fingerprint) == 95
    assert FINGERPRINT.fullmatch(fingerprint)
    spki = server_key.cert.public_key().public_bytes(Encoding.DER,
                                                     PublicFormat.SubjectPublicKeyInfo)
    assert fingerprint.replace(":", "") == hashlib.sha256(spki).hexdigest().upper()


def test_key_is_generated_once_and_kept_private(tmp_path):
    first = load_server_key(tmp_path)
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600
    assert load_server_key(tmp_path).fingerprint == first.fingerprint


def test_rotation_replaces_the_key(tmp_path):
    before = load_server_key(tmp_path).fingerprint
    after = rotate_server_key(tmp_path).fingerprint
    assert after != before
    assert load_server_key(tmp_path).fingerprint == after
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["server.pem"]  # no temp files left
