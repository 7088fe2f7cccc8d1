"""The one error hierarchy: every error carries a status, an issue code and an exit code,
and the API turns each into an OperationOutcome of that status."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import phivault.errors
import phivault.vault  # loads the modules that could define further errors
from phivault.api.app import create_app
from phivault.crypto.kek import KeyFileKeySource
from phivault.errors import PhivaultError
from phivault.vault import init_data_dir, open_vault

# FHIR R4 IssueType value set (http://hl7.org/fhir/issue-type).
ISSUE_TYPES = frozenset(
    """
    invalid structure required value invariant security login unknown expired forbidden
    suppressed processing not-supported duplicate multiple-matches not-found deleted
    too-long code-invalid extension too-costly business-rule conflict transient lock-error
    no-store exception timeout incomplete throttled informational
    """.split()
)


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def all_errors() -> list[type[PhivaultError]]:
    found: set[type[PhivaultError]] = {PhivaultError}
    for _, obj in inspect.getmembers(phivault.errors, inspect.isclass):
        if issubclass(obj, PhivaultError):
            found.add(obj)
    found.update(_subclasses(PhivaultError))
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


ERRORS = all_errors()


def test_the_hierarchy_is_found() -> None:
    names = {c.__name__ for c in ERRORS}
    assert {"BadRequest", "NotFound", "Gone", "VersionConflict", "AuditUnavailable"} <= names
    assert len(ERRORS) >= 25


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_error_carries_status_issue_code_and_exit_code(cls: type[PhivaultError]) -> None:
    assert type(cls.http_status) is int
    assert 400 <= cls.http_status <= 599
    assert isinstance(cls.issue_code, str) and cls.issue_code
    assert cls.issue_code in ISSUE_TYPES
    assert type(cls.exit_code) is int
    assert cls.exit_code > 0
    assert isinstance(cls.default_message, str) and cls.default_message

    err = cls()
    assert err.message == cls.default_message
    assert str(err) == cls.default_message
    assert err.expression == []
    custom = cls("custom text", expression=["Patient.name"])
    assert custom.message == "custom text"
    assert custom.expression == ["Patient.name"]


def test_status_classes_are_coherent() -> None:
    by_name = {c.__name__: c for c in ERRORS}
    assert by_name["NotFound"].http_status == 404
    assert by_name["Gone"].http_status == 410
    assert by_name["VersionConflict"].http_status == 412
    assert by_name["InvalidResource"].http_status == 422
    assert by_name["Unauthorized"].http_status == 401
    assert by_name["Forbidden"].http_status == 403
    assert by_name["AuditUnavailable"].http_status == 503
    # A subclass is still caught as its parent by callers.
    assert issubclass(by_name["MalformedJson"], by_name["BadRequest"])


class _RaisingService:
    """Stands in for the real service's read: every read raises the error it is given."""

    def __init__(self) -> None:
        self.error: BaseException = RuntimeError("unset")

    def read(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


@pytest.fixture
def raising(tmp_path: Path, key_file: Path) -> Iterator[tuple[_RaisingService, TestClient]]:
    """The real app over a real (SQLite) vault whose reads raise the chosen error."""
    data = tmp_path / "data"
    init_data_dir(data, KeyFileKeySource(key_file))
    vault = open_vault(data, KeyFileKeySource(key_file))
    service = _RaisingService()
    vault.service.read = service.read  # type: ignore[method-assign]
    app = create_app(vault.service, vault.settings)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield service, client
    finally:
        vault.close()


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_api_turns_error_into_operation_outcome(
    raising: tuple[_RaisingService, TestClient], cls: type[PhivaultError]
) -> None:
    service, client = raising
    service.error = cls(expression=["Patient.birthDate"])
    res = client.get("/fhir/Patient/abc")
    assert res.status_code == cls.http_status
    assert res.headers["content-type"].startswith("application/fhir+json")
    assert res.headers["cache-control"] == "no-store"
    assert res.headers["x-content-type-options"] == "nosniff"
    body = res.json()
    assert body["resourceType"] == "OperationOutcome"
    assert len(body["issue"]) == 1
    issue = body["issue"][0]
    assert issue["code"] == cls.issue_code
    assert issue["severity"] in ("error", "fatal")
    assert issue["diagnostics"] == cls.default_message
    assert issue["expression"] == ["Patient.birthDate"]
    assert "Traceback" not in res.text


def test_unexpected_exception_is_an_opaque_500(
    raising: tuple[_RaisingService, TestClient],
) -> None:
    service, client = raising
    service.error = RuntimeError("Zzyzxphi leaked detail /secret/path.py")
    res = client.get("/fhir/Patient/abc")
    assert res.status_code == 500
    body = res.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "exception"
    for leak in ("Zzyzxphi", "RuntimeError", "secret", "Traceback"):
        assert leak not in res.text


def test_unexpected_exception_response_has_security_headers(
    raising: tuple[_RaisingService, TestClient],
) -> None:
    service, client = raising
    service.error = RuntimeError("boom")
    res = client.get("/fhir/Patient/abc")
    assert res.status_code == 500
    assert res.headers.get("cache-control") == "no-store"
    assert res.headers.get("x-content-type-options") == "nosniff"
