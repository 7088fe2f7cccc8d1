from __future__ import annotations

from starlette.testclient import TestClient

FHIR = "application/fhir+json"


def test_create_then_read(client: TestClient) -> None:
    res = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Ng"}]},
        headers={"content-type": FHIR},
    )
    assert res.status_code == 201, res.text
    rid = res.json()["id"]
    got = client.get(f"/fhir/Patient/{rid}")
    assert got.status_code == 200
    assert got.json()["name"][0]["family"] == "Ng"
    assert got.headers["etag"] == 'W/"1"'
