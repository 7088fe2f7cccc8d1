"""Only crypto/primitives.py may import `cryptography` (DESIGN: one sharp edge)."""

from __future__ import annotations

import ast
from pathlib import Path

import phivault

SRC = Path(phivault.__file__).resolve().parent
ALLOWED = {Path("crypto/primitives.py")}


def _imports_cryptography(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            continue
        if any(n == "cryptography" or n.startswith("cryptography.") for n in names):
            return True
    return False


def test_only_primitives_imports_cryptography() -> None:
    sources = sorted(SRC.rglob("*.py"))
    assert Path("crypto/primitives.py") in {s.relative_to(SRC) for s in sources}
    offenders = [
        str(path.relative_to(SRC))
        for path in sources
        if path.relative_to(SRC) not in ALLOWED
        and _imports_cryptography(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    ]
    assert offenders == []


def test_the_scanner_sees_imports() -> None:
    for code in [
        "import cryptography",
        "from cryptography.hazmat.primitives import hashes",
        "import os, cryptography.x509 as x",
        "def f():\n    from cryptography import fernet",
        "importlib.import_module('cryptography.fernet')",
    ]:
        assert _imports_cryptography(ast.parse(code)), code
    assert not _imports_cryptography(ast.parse("from phivault.crypto import primitives"))
    assert not _imports_cryptography(ast.parse("from . import cryptography_notes"))
