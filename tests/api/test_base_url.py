"""Links follow the request's own host (the base URL is kept per host, not globally)."""

from __future__ import annotations

from starlette.testclient import TestClient

FHIR = {"content-type": "application/fhir+json"}
PATIENT = b'{"resourceType": "Patient", "name": [{"family": "Ng"}]}'


def test_location_follows_each_requests_host(client: TestClient) -> None:
    for host in ("a.example", "b.example:8443", "a.example"):
        reply = client.post("/fhir/Patient", content=PATIENT, headers={**FHIR, "host": host})
        assert reply.status_code == 201
        assert reply.headers["location"].startswith(f"http://{host}/fhir/Patient/")


def test_search_links_follow_the_host(client: TestClient) -> None:
    for host in ("c.example", "d.example"):
        bundle = client.get("/fhir/Patient?family=Ng", headers={"host": host}).json()
        assert bundle["link"][0]["url"].startswith(f"http://{host}/fhir/Patient?")
