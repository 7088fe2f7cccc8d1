"""SMART v1 and v2 scopes."""

from __future__ import annotations

import pytest

from phivault.access.scopes import Scope, check_within, parse_scope, parse_scopes
from phivault.errors import InvalidScope


def test_v2_and_v1_forms() -> None:
    assert parse_scope("patient/Observation.rs") == Scope("patient", "Observation", "rs")
    assert parse_scope("user/*.cruds") == Scope("user", "*", "cruds")
    assert parse_scope("system/*.rs") == Scope("system", "*", "rs")
    assert parse_scope("patient/*.read") == Scope("patient", "*", "rs")
    assert parse_scope("user/Patient.write") == Scope("user", "Patient", "cud")
    assert parse_scope("user/Patient.*") == Scope("user", "Patient", "cruds")
    assert parse_scope("launch/patient") is None


@pytest.mark.parametrize(
    "bad",
    [
        "patient/Observation.sr",
        "user/*.x",
        "admin/*.rs",
        "patient/Observation.rs?category=x",
        "foo",
    ],
)
def test_malformed_scopes_are_refused(bad: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scope(bad)


def test_interactions() -> None:
    scope = Scope("patient", "Observation", "rs")
    assert scope.allows("Observation", "read")
    assert scope.allows("Observation", "search")
    assert scope.allows("Observation", "vread")
    assert not scope.allows("Observation", "create")
    assert not scope.allows("Patient", "read")
    assert Scope("user", "*", "cud").allows("Condition", "patch")


def test_no_escalation() -> None:
    assert (
        check_within("patient/Observation.rs", "patient/*.read launch/patient")
        == "patient/Observation.rs"
    )
    for wider in ("patient/*.cruds", "user/*.rs", "system/*.rs", "patient/*.rs offline_access"):
        with pytest.raises(InvalidScope):
            check_within(wider, "patient/*.rs launch/patient")
    resource, other = parse_scopes("launch/patient patient/*.rs openid")
    assert resource == (Scope("patient", "*", "rs"),)
    assert other == {"launch/patient", "openid"}
