"""Patient/{id}/$everything: the compartment, the resources it references outside any
compartment (never another patient's), paging, _type, _since, and its audit entry."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.testclient import TestClient

from phivault.fhir.resources import now_instant
from phivault.vault import Vault

CT = {"content-type": "application/fhir+json"}


def create(client: TestClient, body: dict[str, Any]) -> str:
    res = client.post(f"/fhir/{body['resourceType']}", content=json.dumps(body), headers=CT)
    assert res.status_code == 201, res.text
    rid: str = res.json()["id"]
    return rid


def obs(pid: str, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": code},
        "subject": {"reference": f"Patient/{pid}"},
        **extra,
    }


def clinic(client: TestClient) -> dict[str, str]:
    ids = {
        "org": create(client, {"resourceType": "Organization", "name": "Clinic"}),
        "doc": create(client, {"resourceType": "Practitioner", "name": [{"family": "Ito"}]}),
        "pat": create(client, {"resourceType": "Patient", "name": [{"family": "Tanaka"}]}),
        "other": create(client, {"resourceType": "Patient", "name": [{"family": "Sato"}]}),
    }
    ids["o1"] = create(
        client, obs(ids["pat"], "a", performer=[{"reference": f"Practitioner/{ids['doc']}"}])
    )
    # A reference to another patient must not pull that patient's record in.
    ids["o2"] = create(
        client, obs(ids["pat"], "b", performer=[{"reference": f"Patient/{ids['other']}"}])
    )
    ids["enc"] = create(
        client,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{ids['pat']}"},
            "serviceProvider": {"reference": f"Organization/{ids['org']}"},
        },
    )
    ids["o3"] = create(client, obs(ids["other"], "c"))
    return ids


def entries(bundle: dict[str, Any], mode: str) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    }


def test_everything_returns_the_record_and_what_it_references(
    client: TestClient, vault: Vault
) -> None:
    ids = clinic(client)
    res = client.get(f"/fhir/Patient/{ids['pat']}/$everything")
    assert res.status_code == 200, res.text
    bundle = res.json()
    assert bundle["type"] == "searchset"
    assert bundle["entry"][0]["resource"]["id"] == ids["pat"]  # the patient comes first
    assert entries(bundle, "match") == {
        f"Patient/{ids['pat']}",
        f"Observation/{ids['o1']}",
        f"Observation/{ids['o2']}",
        f"Encounter/{ids['enc']}",
    }
    assert entries(bundle, "include") == {
        f"Practitioner/{ids['doc']}",
        f"Organization/{ids['org']}",
    }
    assert bundle["total"] == 4
    assert "Sato" not in res.text
    size = vault.store.audit_size()
    events = [json.loads(e) for _, e in vault.store.audit_entries(0, size)]
    everything = [e for e in events if e["action"] == "everything"]
    assert len(everything) == 1
    assert f"Observation/{ids['o1']}/1" in everything[0]["results"]
    assert "patient" in everything[0]  # pseudonymised compartment


def test_paging_is_stable_while_the_record_changes(client: TestClient) -> None:
    ids = clinic(client)
    url: str | None = f"/fhir/Patient/{ids['pat']}/$everything?_count=2"
    seen: list[str] = []
    pages = 0
    while url:
        res = client.get(url)
        assert res.status_code == 200, res.text
        page = res.json()
        pages += 1
        assert len(entries(page, "match")) <= 2
        seen.extend(
            f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in page["entry"]
            if e["search"]["mode"] == "match"
        )
        if pages == 1:
            # Written between pages: sorts before what is left, so it must not shift
            # the later pages (keyset cursor).
            create(
                client,
                {
                    "resourceType": "AllergyIntolerance",
                    "patient": {"reference": f"Patient/{ids['pat']}"},
                },
            )
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert pages >= 2
    assert len(seen) == len(set(seen))
    assert {
        f"Observation/{ids['o1']}",
        f"Observation/{ids['o2']}",
        f"Encounter/{ids['enc']}",
    } <= set(seen)


def test_type_and_since(client: TestClient) -> None:
    ids = clinic(client)
    res = client.get(f"/fhir/Patient/{ids['pat']}/$everything?_type=Observation")
    assert entries(res.json(), "match") == {f"Observation/{ids['o1']}", f"Observation/{ids['o2']}"}
    assert entries(res.json(), "include") == set()  # Practitioner is not in _type

    time.sleep(0.01)
    mark = now_instant()  # same clock as the server's
    time.sleep(0.01)
    later = create(client, obs(ids["pat"], "d"))
    res = client.get(f"/fhir/Patient/{ids['pat']}/$everything", params={"_since": mark})
    assert res.status_code == 200, res.text
    assert entries(res.json(), "match") == {f"Observation/{later}"}


def test_unknown_patient_and_unsupported_parameters(client: TestClient) -> None:
    res = client.get("/fhir/Patient/nobody/$everything")
    assert res.status_code == 404
    assert res.json()["resourceType"] == "OperationOutcome"
    pid = create(client, {"resourceType": "Patient"})
    assert client.get(f"/fhir/Patient/{pid}/$everything?start=2020").status_code == 400
    assert client.get(f"/fhir/Patient/{pid}/$everything?_cursor=%%%").status_code == 400
