"""Known-answer vectors for RFC 9162 proof verification (transparency-dev test vectors)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from phivault.audit.proofs import verify_consistency, verify_inclusion
from phivault.errors import ProofError
from tests.shared_data import shared_dir

VECTORS = shared_dir() / "vectors" / "rfc9162"


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def _case_id(path: Path) -> str:
    return path.relative_to(VECTORS).as_posix()


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(node) for node in value or []]


def _expect_error(path: Path, case: dict[str, Any]) -> bool:
    # No exceptions: every wantErr:false case verifies, every wantErr:true one is rejected.
    return bool(case["wantErr"])


def test_vectors_are_present() -> None:
    # An empty parameter set would silently skip every vector below.
    assert len(_cases("inclusion")) > 50
    assert len(_cases("consistency")) > 50


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_case_id)
def test_inclusion_vector(path: Path) -> None:
    case = _load(path)
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        _proof(case["proof"]),
        _b64(case["root"]),
    )
    if _expect_error(path, case):
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=_case_id)
def test_consistency_vector(path: Path) -> None:
    case = _load(path)
    args = (
        case["size1"],
        case["size2"],
        _proof(case["proof"]),
        _b64(case["root1"]),
        _b64(case["root2"]),
    )
    if _expect_error(path, case):
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
