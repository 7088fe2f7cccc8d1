"""Property tests: the audit readers take tampered or random bytes and answer with their
one clear error (IntegrityError, CheckpointError, ProofError), never an unexpected
exception, and a tampered checkpoint or proof never verifies."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from phivault.audit.checkpoint import (
    CheckpointSigner,
    decode_public_key,
    parse_checkpoint,
    verify_checkpoint,
)
from phivault.audit.entry import decode_entry
from phivault.audit.merkle import leaf_hash, verify_tree
from phivault.audit.proofs import verify_consistency, verify_inclusion
from phivault.errors import CheckpointError, IntegrityError, PhivaultError, ProofError
from phivault.fhir import json as fhirjson

BUDGET = settings(max_examples=200, deadline=None)
SIGNER = CheckpointSigner(b"\x07" * 32)
ROOT = verify_tree((leaf_hash(bytes([i])) for i in range(5)), 5)
GOOD = SIGNER.sign(5, ROOT, "2026-01-01T00:00:00.000Z").blob
ENTRY = fhirjson.dumps(
    {"v": 1, "action": "read", "outcome": "0", "actor": "a", "time": "2026-01-01T00:00:00Z"}
)


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in flips:
        if out:
            out[pos % len(out)] ^= value or 1
    return bytes(out[:cut] if cut is not None else out)


FLIPS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)
CUT = st.none() | st.integers(0, 400)


@BUDGET
@given(st.binary(max_size=400))
def test_entry_decoder_takes_any_bytes(raw: bytes) -> None:
    try:
        decode_entry(raw)
    except IntegrityError:
        pass


@BUDGET
@given(FLIPS, CUT)
def test_tampered_entries_are_refused_or_still_entries(
    flips: list[tuple[int, int]], cut: int | None
) -> None:
    try:
        entry = decode_entry(mutate(ENTRY, flips, cut))
    except IntegrityError:
        return
    assert isinstance(entry, dict) and entry["v"] == 1


def test_a_real_checkpoint_verifies() -> None:
    assert verify_checkpoint(SIGNER.public_key, GOOD).root == ROOT


@BUDGET
@given(st.one_of(st.binary(max_size=1200), st.builds(mutate, st.just(GOOD), FLIPS, CUT)))
def test_tampered_checkpoints_never_verify(blob: bytes) -> None:
    try:
        parse_checkpoint(blob)
    except CheckpointError:
        pass
    try:
        checkpoint = verify_checkpoint(SIGNER.public_key, blob)
    except CheckpointError:
        return
    # Only a byte-identical (or canonically equal) blob may verify.
    assert checkpoint.root == ROOT and checkpoint.size == 5


@BUDGET
@given(st.text(max_size=80))
def test_public_key_decoder_takes_any_text(text: str) -> None:
    try:
        key = decode_public_key(text)
    except PhivaultError as exc:
        assert exc.message
        return
    assert len(key) == 32


HASHES = st.lists(st.binary(min_size=0, max_size=40), max_size=8)
ANY_INT: Any = st.one_of(st.integers(-5, 20), st.integers(), st.just(2**63))


@BUDGET
@given(st.binary(max_size=40), ANY_INT, ANY_INT, HASHES, st.binary(max_size=40))
def test_inclusion_proofs_verify_or_raise_proof_error(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except ProofError:
        return
    raise AssertionError("a random inclusion proof verified")


@BUDGET
@given(ANY_INT, ANY_INT, HASHES, st.binary(max_size=40), st.binary(max_size=40))
def test_consistency_proofs_verify_or_raise_proof_error(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> None:
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except ProofError:
        return
    # Equal sizes with an empty proof and equal roots is the one trivial success.
    assert size1 == size2 and not proof and root1 == root2
