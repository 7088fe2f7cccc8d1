"""Signed checkpoints: format, signature, and that any change is refused opaquely."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from phivault.audit.checkpoint import (
    CheckpointSigner,
    decode_public_key,
    log_id_of,
    parse_checkpoint,
    public_key_document,
    verify_checkpoint,
)
from phivault.crypto import primitives
from phivault.errors import CheckpointError

SEED = hashlib.sha256(b"test seed").digest()
ROOT = hashlib.sha256(b"root").digest()


@pytest.fixture
def signer() -> CheckpointSigner:
    return CheckpointSigner(SEED)


def test_round_trip_and_canonical_form(signer: CheckpointSigner) -> None:
    checkpoint = signer.sign(42, ROOT, "2024-05-01T10:00:00.000Z")
    assert checkpoint.blob == orjson.dumps(
        orjson.loads(checkpoint.blob), option=orjson.OPT_SORT_KEYS
    )
    assert b" " not in checkpoint.blob
    fields = orjson.loads(checkpoint.blob)
    assert set(fields) == {"v", "log_id", "size", "root", "time", "signature"}
    assert fields["log_id"] == log_id_of(signer.public_key) == signer.log_id
    verified = verify_checkpoint(signer.public_key, checkpoint.blob)
    assert (verified.size, verified.root, verified.time) == (42, ROOT, "2024-05-01T10:00:00.000Z")
    # Deterministic (Ed25519): the same head signs to the same bytes.
    assert signer.sign(42, ROOT, "2024-05-01T10:00:00.000Z").blob == checkpoint.blob


@pytest.mark.parametrize(
    "change",
    [
        {"size": 43},
        {"root": base64.b64encode(b"\x00" * 32).decode()},
        {"time": "2024-05-01T10:00:00.001Z"},
        {"log_id": "0" * 32},
        {"v": 2},
        {"v": True},
        {"size": True},
        {"extra": 1},
        {"signature": base64.b64encode(b"\x00" * 64).decode()},
        {"root": "not base64!"},
    ],
)
def test_any_change_is_refused(signer: CheckpointSigner, change: dict[str, object]) -> None:
    fields = orjson.loads(signer.sign(42, ROOT).blob)
    fields.update(change)
    with pytest.raises(CheckpointError) as caught:
        verify_checkpoint(signer.public_key, orjson.dumps(fields))
    assert caught.value.message == CheckpointError.default_message  # says nothing more


def test_another_key_and_garbage_are_refused(signer: CheckpointSigner) -> None:
    blob = signer.sign(1, ROOT).blob
    other = primitives.public_key_of(primitives.generate_signing_key())
    for key, data in [(other, blob), (signer.public_key, b"{"), (signer.public_key, b"x" * 5000)]:
        with pytest.raises(CheckpointError):
            verify_checkpoint(key, data)
    with pytest.raises(CheckpointError):
        verify_checkpoint(b"short", blob)


def test_whitespace_does_not_matter_but_content_does(signer: CheckpointSigner) -> None:
    blob = signer.sign(5, ROOT).blob
    pretty = orjson.dumps(orjson.loads(blob), option=orjson.OPT_INDENT_2)
    assert verify_checkpoint(signer.public_key, pretty).blob == blob
    assert parse_checkpoint(pretty)[0].blob == blob


def test_empty_trees_are_not_signed(signer: CheckpointSigner) -> None:
    with pytest.raises(ValueError):
        signer.sign(0, ROOT)


def test_public_key_document_and_decoding(signer: CheckpointSigner) -> None:
    doc = public_key_document(signer.public_key)
    assert doc["algorithm"] == "Ed25519"
    assert decode_public_key(doc["public_key"]) == signer.public_key
    assert decode_public_key(signer.public_key.hex()) == signer.public_key
    for bad in ["", "abc", base64.b64encode(b"x" * 31).decode()]:
        with pytest.raises(CheckpointError):
            decode_public_key(bad)
