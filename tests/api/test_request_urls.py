"""Links follow the request's own host, and the query string is read as Starlette reads it."""

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


def test_query_text_is_starlettes_query() -> None:
    from starlette.requests import Request

    from phivault.api.http import query_text

    for raw in (b"", b"a=1&b=%7C2", b"name=J%C3%BCrgen", "name=Jürgen".encode(), b"a=1#frag",
                b"a=1\tb", b"x=%0A"):  # fmt: skip
        scope = {"type": "http", "path": "/fhir/Patient", "query_string": raw, "headers": []}
        request = Request(scope)
        assert query_text(request) == request.url.query, raw
