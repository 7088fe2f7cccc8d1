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

# Cases where phivault is deliberately stricter than the vectors: any hash that is not
# 32 bytes is malformed input, even when two such "roots" happen to be equal.
STRICTER: dict[str, str] = {
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": (
        "roots are 12-byte placeholders"
    ),
}


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
    return bool(case["wantErr"]) or _case_id(path) in STRICTER


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


def test_stricter_cases_exist_and_want_success() -> None:
    # Keeps the exception list honest: it must name real files that the vectors accept.
    for name in STRICTER:
        case = _load(VECTORS / name)
        assert case["wantErr"] is False
