"""OperationOutcome construction: the single shape every error and warning takes."""

from __future__ import annotations

from typing import Any

from phivault.types import Resource


def issue(
    severity: str, code: str, diagnostics: str, expression: list[str] | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        entry["expression"] = list(expression)
    return entry


def operation_outcome(issues: list[dict[str, Any]]) -> Resource:
    return {"resourceType": "OperationOutcome", "issue": issues}


def information(message: str) -> Resource:
    return operation_outcome([issue("information", "informational", message)])
