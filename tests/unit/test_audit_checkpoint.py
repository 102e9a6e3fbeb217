"""Checkpoints, signatures and the key files: pure or local files, no broker."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from katagate.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    decode,
    encode,
    sign,
    signature_valid,
)
from katagate.audit.keys import AuditKeyError, key_id, load_or_create, load_public_key


def unsigned(key: Ed25519PrivateKey) -> Checkpoint:
    return Checkpoint(
        namespace="katagate", topic="mail", partition=2, position=100, count=61,
        first_offset=120, last_offset=180, previous_head="00" * 32, head="ab" * 32,
        created_at="2025-03-14T09:26:53+00:00", key_id=key_id(key.public_key()),
    )


def test_a_signed_checkpoint_round_trips_and_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    given = sign(unsigned(key), key)
    decoded = decode(encode(given))
    assert decoded == given
    assert signature_valid(decoded, key.public_key())
    assert decoded.end == 161


def test_any_changed_field_breaks_the_signature() -> None:
    key = Ed25519PrivateKey.generate()
    given = sign(unsigned(key), key)
    for field, value in [("head", "cd" * 32), ("count", 60), ("last_offset", 181),
                         ("previous_head", "01" * 32), ("partition", 1), ("topic", "control")]:
        assert not signature_valid(given.model_copy(update={field: value}), key.public_key())


def test_another_key_or_a_garbled_signature_is_refused() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    forged = sign(unsigned(key), other)  # claims our key id
    assert not signature_valid(forged, key.public_key())
    assert not signature_valid(forged.model_copy(update={"signature": "not base64!"}),
                               key.public_key())


def test_unreadable_records_are_errors() -> None:
    key = Ed25519PrivateKey.generate()
    data = json.loads(encode(sign(unsigned(key), key)))
    for bad in [b"", b"[]", json.dumps({**data, "extra": 1}).encode(),
                json.dumps({**data, "head": "xyz"}).encode(),
                json.dumps({**data, "partition": "2"}).encode()]:
        with pytest.raises(CheckpointError):
            decode(bad)


def test_the_key_is_made_once_private_0600_public_beside_it(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    first = load_or_create(folder)
    assert stat.S_IMODE((folder / "audit.key").stat().st_mode) == 0o600
    assert load_or_create(folder).key_id == first.key_id
    assert key_id(load_public_key(first.public_path)) == first.key_id
    assert "private_key" not in repr(first)
    assert "BEGIN" not in repr(first)


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path)
    (tmp_path / "audit.key").chmod(0o644)
    with pytest.raises(AuditKeyError):
        load_or_create(tmp_path)


def test_a_public_key_file_that_is_not_ed25519_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pub"
    path.write_text("not a key")
    with pytest.raises(AuditKeyError):
        load_public_key(path)
