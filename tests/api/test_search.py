"""Search over HTTP: GET and POST _search, compartments, links, lenient and strict handling,
hostile parameters (always a clean 4xx OperationOutcome, never a 500), the
CapabilityStatement. Search semantics themselves are tested in tests/service/."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from starlette.testclient import TestClient

from phivault.vault import Vault

CT = {"content-type": "application/fhir+json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
SECRET = "Zzyzxsecret"


def create(client: TestClient, resource: dict[str, Any]) -> str:
    res = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=CT)
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


def patient(family: str, mrn: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        **extra,
    }


def matches(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


@pytest.fixture
def people(client: TestClient) -> dict[str, str]:
    ids = {
        "smith": create(client, patient("Smith", "1", gender="male")),
        "smithson": create(client, patient("Smithson", "2", gender="female")),
        "jones": create(client, patient("Jones", "3", gender="female")),
    }
    ids["obs"] = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            "subject": {"reference": f"Patient/{ids['smith']}"},
        },
    )
    return ids


def test_get_and_post_search_agree(client: TestClient, people: dict[str, str]) -> None:
    got = client.get("/fhir/Patient", params={"family": "smith", "_sort": "_id"})
    assert got.status_code == 200
    bundle = got.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    assert set(matches(bundle)) == {people["smith"], people["smithson"]}
    posted = client.post("/fhir/Patient/_search?_sort=_id", content="family=smith", headers=FORM)
    assert posted.status_code == 200
    assert matches(posted.json()) == matches(bundle)
    assert client.post("/fhir/Patient/_search", content="{}", headers=CT).status_code == 415


def test_links_page_through_results(client: TestClient, people: dict[str, str]) -> None:
    url = "/fhir/Patient?gender=female,male&_count=2"
    seen: list[str] = []
    first = client.get(url).json()
    assert "previous" not in links(first)
    self_query = dict(parse_qsl(urlsplit(links(first)["self"]).query))
    assert self_query == {"gender": "female,male", "_count": "2"}
    page = first
    while True:
        seen += matches(page)
        nxt = links(page).get("next")
        if nxt is None:
            break
        page = client.get(local(nxt)).json()
    assert sorted(seen) == sorted([people["smith"], people["smithson"], people["jones"]])
    back = client.get(local(links(page)["previous"])).json()
    assert matches(back) == matches(first)


def test_include_entries_have_include_mode(client: TestClient, people: dict[str, str]) -> None:
    bundle = client.get(
        "/fhir/Observation", params={"code": "8302-2", "_include": "Observation:subject"}
    ).json()
    assert matches(bundle) == [people["obs"]]
    assert matches(bundle, "include") == [people["smith"]]


def test_compartment_search_and_neighbouring_routes(
    client: TestClient, people: dict[str, str]
) -> None:
    smith = people["smith"]
    bundle = client.get(f"/fhir/Patient/{smith}/Observation").json()
    assert matches(bundle) == [people["obs"]]
    assert links(bundle)["self"].split("?")[0].endswith(f"/Patient/{smith}/Observation")
    assert matches(client.get(f"/fhir/Patient/{people['jones']}/Observation").json()) == []
    assert client.get(f"/fhir/Patient/{smith}/_history").json()["type"] == "history"
    assert client.get("/fhir/Patient/nobody/Observation").status_code == 404
    assert client.get(f"/fhir/Patient/{smith}/Organization").status_code == 400
    assert client.get("/fhir/_history").json()["type"] == "history"


def test_lenient_by_default_strict_on_request(client: TestClient, people: dict[str, str]) -> None:
    res = client.get("/fhir/Patient", params={"family": "jones", "colour": "blue"})
    assert res.status_code == 200
    bundle = res.json()
    assert matches(bundle) == [people["jones"]]
    (outcome,) = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    (issue,) = outcome["resource"]["issue"]
    assert issue["severity"] == "warning" and "colour" in issue["diagnostics"]
    assert "colour" not in links(bundle)["self"]
    strict = client.get(
        "/fhir/Patient",
        params={"family": "jones", "colour": "blue"},
        headers={"prefer": "handling=strict"},
    )
    assert strict.status_code == 400
    assert strict.json()["resourceType"] == "OperationOutcome"


HOSTILE = [
    [("gender", "male")] * 101,
    [("family", "x" * 3000)],
    [("gender", ",".join(["male"] * 101))],
    [("birthdate", f"ge{SECRET}")],
    [("birthdate", "2021-13-01")],
    [("_lastUpdated", "xx2021")],
    [("_count", "-1")],
    [("_count", "1e3")],
    [("_cursor", SECRET)],
    [("_include", SECRET)],
    [("_summary", SECRET)],
    [("_elements", "1,2")],
    [("family", f"{SECRET}\x00")],
    [("family:contains", SECRET)],
    [("family:bogus", SECRET)],
    [("general-practitioner", f"{SECRET}/1")],
    [("general-practitioner:identifier", SECRET)],
    [("_has:Observation:patient", SECRET)],
    [("_has:Observation:patient:code:text:x", SECRET)],
    [("organization.partof.name", SECRET)],
    [("_id", f"{SECRET}/../x")],
    [("birthdate", "1980-01-01T10:00Z")],
]


def test_hostile_parameters_get_a_clean_400(client: TestClient) -> None:
    # One server for all cases (each case is independent: no data, nothing written).
    for pairs in HOSTILE:
        name = pairs[0][0][:40]
        res = client.get("/fhir/Patient", params=pairs)
        assert res.status_code == 400, (name, res.text)
        assert res.json()["resourceType"] == "OperationOutcome", name
        assert SECRET not in res.text, name
        posted = client.post("/fhir/Patient/_search", content=urlencode(pairs), headers=FORM)
        assert posted.status_code == 400, (name, posted.text)


ODD = [
    "family=%FF%FE",
    "_sort=-",
    "_sort=family,family",
    "name=%E2%80%AE",
    "_count=999999999",
    "given=%20%20x",
]


def test_odd_but_harmless_input_is_never_a_server_error(client: TestClient) -> None:
    for query in ODD:
        res = client.get(f"/fhir/Patient?{query}")
        assert res.status_code < 500, (query, res.text)


def test_capability_statement_lists_the_real_search_parameters(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    observation = resources["Observation"]
    params = {p["name"]: p for p in observation["searchParam"]}
    assert params["code"]["type"] == "token"
    assert params["date"]["type"] == "date"
    assert params["code-value-quantity"]["type"] == "composite"
    assert ":not" in params["code"]["documentation"]
    assert "Observation:subject" in observation["searchInclude"]
    assert "Observation:subject" in resources["Patient"]["searchRevInclude"]
    assert "near" not in {p["name"] for p in resources["Location"]["searchParam"]}


def test_search_is_audited_with_the_results(
    client: TestClient, vault: Vault, people: dict[str, str]
) -> None:
    before = vault.store.audit_size()
    client.get("/fhir/Patient", params={"family": "jones"})
    assert vault.store.audit_size() == before + 1


# -- system-level search ----------------------------------------------------------------------


def test_system_search_get_and_post(client: TestClient, people: dict[str, str]) -> None:
    ids = ",".join(people.values())
    got = client.get("/fhir", params={"_type": "Patient,Observation", "_id": ids, "_count": "2"})
    assert got.status_code == 200, got.text
    bundle = got.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 4
    # Observation before Patient (type, then id); two per page
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Observation", "Patient"]
    assert bundle["entry"][0]["fullUrl"] == f"http://testserver/fhir/Observation/{people['obs']}"
    link = links(bundle)
    assert local(link["self"]).startswith("/fhir?_type=Patient%2CObservation")
    second = client.get(local(link["next"])).json()
    assert len(second["entry"]) == 2 and "next" not in links(second)
    seen = matches(bundle) + matches(second)
    assert sorted(seen) == sorted(people.values())
    posted = client.post("/fhir/_search", content=f"_type=Patient&_id={ids}", headers=FORM)
    assert posted.status_code == 200
    assert sorted(matches(posted.json())) == sorted(
        people[k] for k in ("smith", "smithson", "jones")
    )
    assert client.get("/fhir?_type=Nope").status_code == 400
    strict = client.get(
        "/fhir?_type=Patient,Observation&family=x", headers={"prefer": "handling=strict"}
    )
    assert strict.status_code == 400


def test_system_search_respects_the_callers_types(
    client: TestClient, vault: Vault, people: dict[str, str]
) -> None:
    from phivault.access.runtime import AccessControl
    from tests.conftest import system_token

    access = AccessControl.for_service(vault.service, vault.keyring)
    token = system_token(access, scope="system/Patient.rs", name="patients-only")
    headers = {"authorization": f"Bearer {token}"}
    ids = ",".join(people.values())
    # asking for a type the caller may not search: 403, as at type level
    assert (
        client.get(f"/fhir?_type=Patient,Observation&_id={ids}", headers=headers).status_code == 403
    )
    # without _type: only the types the caller may search
    found = client.get(f"/fhir?_id={ids}", headers=headers)
    assert found.status_code == 200
    assert {e["resource"]["resourceType"] for e in found.json()["entry"]} == {"Patient"}
    assert found.json()["total"] == 3


def test_capability_statement_declares_system_search(client: TestClient) -> None:
    rest = client.get("/fhir/metadata").json()["rest"][0]
    assert {"code": "search-system"} in rest["interaction"]
    names = {p["name"] for p in rest["searchParam"]}
    assert {"_id", "_lastUpdated", "_tag", "_profile", "_security"} <= names
    assert "family" not in names and "code" not in names
