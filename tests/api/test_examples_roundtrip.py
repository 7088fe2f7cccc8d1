"""Every official R4 JSON example goes in with PUT and comes back unchanged.

Examples R4 rejects get 422 with an OperationOutcome that names the element, and nothing
is stored. Resource types that are messages (Parameters, OperationOutcome) are refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from starlette.testclient import TestClient

from phivault.fhir.resources import STORABLE_TYPES
from tests.shared_data import shared_dir

FHIR = "application/fhir+json"
HEADERS = {"content-type": FHIR}
EXAMPLES = shared_dir() / "fhir" / "r4" / "examples"

# Examples the R4 specification itself does not satisfy, with an element path the
# OperationOutcome must name.
INVALID: dict[str, str] = {
    # Questionnaire.item.linkId is 1..1; the nested items of this example have none.
    "bundle-questionnaire.json": "Questionnaire.item[0].item[0].linkId",
}

# Examples with decimals whose precision (trailing zeros, exponent digits) is significant.
# FHIR decimal: "Do not use an IEEE type floating point type ... use something that works
# like a true decimal, with inbuilt precision"; 0.40 and 0.4 are different values.
DECIMAL_EXAMPLES = {
    "diagnosticreport-example.json",
    "observation-decimal.json",
    "paymentnotice-example.json",
    "riskassessment-example.json",
}


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


def _json_files() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.json") if p.is_file())


def _storable_with_id() -> list[str]:
    out = []
    for name in _json_files():
        data = _load(name)
        if data.get("resourceType") in STORABLE_TYPES and isinstance(data.get("id"), str):
            out.append(name)
    return out


def _not_storable() -> list[str]:
    return [n for n in _json_files() if _load(n).get("resourceType") not in STORABLE_TYPES]


# AuditEvent is served from the audit log and refuses writes (405): it has its own test.
READ_ONLY_TYPES = {"AuditEvent"}


def _valid_params() -> list[str]:
    return [
        name
        for name in _storable_with_id()
        if name not in INVALID and _load(name).get("resourceType") not in READ_ONLY_TYPES
    ]


def test_auditevent_example_is_refused(client: TestClient) -> None:
    body = _load("auditevent-example.json")
    res = client.put(f"/fhir/AuditEvent/{body['id']}", content=json.dumps(body), headers=HEADERS)
    assert res.status_code == 405, res.text
    assert res.json()["resourceType"] == "OperationOutcome"


def _decimal_exact(text: str) -> tuple[str, Any]:
    # Keeps the digits and the exponent: 1.0 and 1.00 differ, 1E-22 and 1e-22 do not.
    return ("decimal", Decimal(text).as_tuple())


def _canonical(raw: bytes | str) -> Any:
    return json.loads(raw, parse_float=_decimal_exact)


def _without_server_meta(resource: dict[str, Any], had_meta: bool) -> dict[str, Any]:
    out = dict(resource)
    if "meta" in out:
        meta = {k: v for k, v in out["meta"].items() if k not in ("versionId", "lastUpdated")}
        if meta or had_meta:
            out["meta"] = meta
        else:
            del out["meta"]
    return out


def test_examples_are_present() -> None:
    # An empty parameter set would silently skip every example below.
    assert len(_json_files()) > 50
    assert len(_storable_with_id()) > 50
    assert set(INVALID) <= set(_storable_with_id())
    assert DECIMAL_EXAMPLES <= set(_storable_with_id())


@pytest.mark.parametrize("name", _valid_params())
def test_example_roundtrip(client: TestClient, name: str) -> None:
    raw = (EXAMPLES / name).read_bytes()
    original = _load(name)
    rtype, rid = original["resourceType"], original["id"]

    put = client.put(f"/fhir/{rtype}/{rid}", content=raw, headers=HEADERS)
    assert put.status_code == 201, put.text
    assert put.headers["etag"] == 'W/"1"'

    got = client.get(f"/fhir/{rtype}/{rid}")
    assert got.status_code == 200, got.text
    returned = _canonical(got.content)
    assert returned["meta"]["versionId"] == "1"
    assert returned["meta"]["lastUpdated"]

    expected = _without_server_meta(_canonical(raw), had_meta="meta" in original)
    assert _without_server_meta(returned, had_meta="meta" in original) == expected
    # The representation returned by the PUT is the stored version too.
    assert _canonical(put.content) == returned


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_example_is_rejected(client: TestClient, name: str) -> None:
    raw = (EXAMPLES / name).read_bytes()
    original = _load(name)
    rtype, rid = original["resourceType"], original["id"]

    res = client.put(f"/fhir/{rtype}/{rid}", content=raw, headers=HEADERS)
    assert res.status_code == 422, res.text
    outcome = res.json()
    assert outcome["resourceType"] == "OperationOutcome"
    expressions = [e for issue in outcome["issue"] for e in issue.get("expression", [])]
    assert INVALID[name] in expressions
    assert all(issue["severity"] in ("error", "fatal") for issue in outcome["issue"])
    assert "Traceback" not in res.text

    assert client.get(f"/fhir/{rtype}/{rid}").status_code == 404
    assert client.post(f"/fhir/{rtype}", content=raw, headers=HEADERS).status_code == 422
    history = client.get(f"/fhir/{rtype}/_history").json()
    assert history["total"] == 0


@pytest.mark.parametrize("name", _not_storable())
def test_not_storable_example_is_refused(client: TestClient, name: str) -> None:
    raw = (EXAMPLES / name).read_bytes()
    original = _load(name)
    rtype = original["resourceType"]
    rid = original.get("id") or "example"
    if "id" not in original:
        # A PUT needs the id in the body; give it one so only the type is at issue.
        raw = json.dumps({**original, "id": rid}).encode()

    for res in (
        client.post(f"/fhir/{rtype}", content=raw, headers=HEADERS),
        client.put(f"/fhir/{rtype}/{rid}", content=raw, headers=HEADERS),
    ):
        assert 400 <= res.status_code < 500, res.text
        assert res.headers["content-type"].startswith(FHIR)
        assert res.json()["resourceType"] == "OperationOutcome"
    got = client.get(f"/fhir/{rtype}/{rid}")
    assert got.status_code == 404
    assert got.json()["resourceType"] == "OperationOutcome"


def test_not_storable_examples_are_found() -> None:
    assert {_load(n)["resourceType"] for n in _not_storable()} == {
        "Parameters",
        "OperationOutcome",
    }
