"""Hostile input over HTTP, on both backends: every answer is bounded and clear.

SQL meta-characters, path traversal, unicode edge cases and absurd numbers go into every
id, version, cursor, header and search parameter the API takes; oversized bodies, URLs and
headers, deeply nested JSON and floods of search parameters go at the limits. Each must get
a 2xx/4xx answer (an OperationOutcome when it is an error) that does not echo the value,
never a 500, and must leave the stored data as it was.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from phivault.config import Settings
from phivault.vault import Vault

FHIR = {"content-type": "application/fhir+json"}

# Each is sent raw (percent-encoded where it goes into a URL).
NASTY = [
    "' OR 1=1--",
    '"; DROP TABLE versions; --',
    "1; SELECT pg_sleep(10)",
    "%",
    "_",
    "\\",
    "../../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "/etc/passwd",
    "%2e%2e%2f",
    "\u0000",
    "a\u0000b",
    "\u202egnp.exe",
    "\ufeff",
    "\U0001f600" * 40,
    "\u00b2",  # isdigit() is True, int() refuses it
    "\u0663",  # an Arabic-Indic digit
    "\udcff",  # a lone surrogate (sent as its UTF-8-ish bytes: see _url)
    "9" * 40,
    "-1",
    "1e999999",
    "NaN",
    "x" * 5000,
    "$(reboot)",
    "{{7*7}}",
    "<script>alert(1)</script>",
]
MARKER = "HostileMarker"
VALID_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _url(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def assert_clear(res: Any, value: str | None = None) -> None:
    """Not a 500, an OperationOutcome when refused, and (for a value that is not a valid
    FHIR id, which may be echoed as a reference) the value is not echoed back."""
    assert res.status_code < 500, (res.status_code, str(res.url)[:200], res.text[:300])
    if res.status_code >= 400:
        body = res.json()
        assert body["resourceType"] == "OperationOutcome", body
        assert body["issue"] and all(i.get("diagnostics") for i in body["issue"])
        if value is not None and len(value) >= 4 and not VALID_ID.fullmatch(value):
            assert value not in res.text, "the error echoes the hostile value"


@pytest.fixture
def seeded(client: TestClient, vault: Vault) -> tuple[str, int]:
    body = {"resourceType": "Patient", "id": "victim", "name": [{"family": MARKER}]}
    assert (
        client.put("/fhir/Patient/victim", content=json.dumps(body), headers=FHIR).status_code
        == 201
    )
    return "victim", vault.store.count_current("Patient")


def _targets(vault: Vault) -> int:
    """The one resource the header tests may write."""
    current = vault.store.current("Patient", "target")
    return 0 if current is None or current.deleted else 1


def assert_untouched(client: TestClient, vault: Vault, seeded: tuple[str, int]) -> None:
    rid, count = seeded
    assert vault.store.count_current("Patient") - _targets(vault) == count
    res = client.get(f"/fhir/Patient/{rid}")
    assert res.status_code == 200
    assert res.json()["name"][0]["family"] == MARKER
    assert res.headers["etag"] == 'W/"1"'


def test_nasty_values_in_paths(client: TestClient, vault: Vault, seeded: tuple[str, int]) -> None:
    for value in NASTY:
        _paths(client, value)
    assert_untouched(client, vault, seeded)


def _paths(client: TestClient, value: str) -> None:
    v = _url(value)
    for path in (
        f"/fhir/Patient/{v}",
        f"/fhir/{v}",
        f"/fhir/{v}/x",
        f"/fhir/Patient/victim/_history/{v}",
        f"/fhir/Patient/{v}/_history",
        f"/fhir/Patient/{v}/$everything",
        f"/fhir/Patient/{v}/Observation",
        f"/fhir/AuditEvent/{v}",
    ):
        assert_clear(client.get(path), value)
    assert_clear(client.delete(f"/fhir/Patient/{v}"), value)
    if not VALID_ID.fullmatch(value):  # a valid id would simply be created
        body = json.dumps({"resourceType": "Patient", "id": value})
        res = client.put(f"/fhir/Patient/{v}", content=body, headers=FHIR)
        assert 400 <= res.status_code < 500, res.text
        assert_clear(res, value)


def test_nasty_values_in_parameters(
    client: TestClient, vault: Vault, seeded: tuple[str, int]
) -> None:
    for value in NASTY:
        _parameters(client, value)
    assert_untouched(client, vault, seeded)


def _parameters(client: TestClient, value: str) -> None:
    v = _url(value)
    names = [
        "_id", "name", "family", "birthdate", "gender", "identifier", "general-practitioner",
        "_count", "_cursor", "_sort", "_elements", "_summary", "_total", "_include",
        "_revinclude", "_has:Observation:patient:code", "general-practitioner:Practitioner.name",
        "name:exact", "name:contains", "_lastUpdated", v,
    ]  # fmt: skip
    for name in names:
        assert_clear(client.get(f"/fhir/Patient?{name}={v}"), value)
    for query in (
        f"/fhir/Observation?value-quantity={v}",
        f"/fhir/Observation?date={v}",
        f"/fhir/Observation?subject={v}",
        f"/fhir/Observation?code={v}|{v}",
        f"/fhir/_history?_since={v}",
        f"/fhir/_history?_cursor={v}",
        f"/fhir/_history?_count={v}",
        f"/fhir/Patient/victim/_history?_cursor={v}",
        f"/fhir/Patient/victim/$everything?_count={v}",
        f"/fhir/Patient/victim/$everything?_since={v}",
        f"/fhir/AuditEvent?date={v}",
        f"/fhir/AuditEvent?_id={v}",
        f"/fhir/AuditEvent?_cursor={v}",
        f"/fhir/AuditEvent?outcome={v}",
        f"/audit/proof/inclusion?index={v}&size={v}",
        f"/audit/proof/consistency?first={v}&second={v}",
        f"/audit/leaves?from={v}&to={v}",
        f"/fhir/metadata?_format={v}",
    ):
        assert_clear(client.get(query), value)
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert_clear(client.post("/fhir/Patient/_search", content=f"name={v}", headers=form), value)


def test_nasty_values_in_headers_and_bundles(
    client: TestClient, vault: Vault, seeded: tuple[str, int]
) -> None:
    for value in NASTY:
        _headers_and_bundles(client, value)
    assert_untouched(client, vault, seeded)


def _headers_and_bundles(client: TestClient, value: str) -> None:
    raw = value.encode("utf-8", "surrogatepass")
    if b"\x00" not in raw and b"\r" not in raw and b"\n" not in raw:
        put = json.dumps({"resourceType": "Patient", "id": "target", "name": [{"family": "X"}]})
        for header in ("if-match", "if-none-exist", "if-none-match", "prefer", "accept"):
            res = client.put(
                "/fhir/Patient/target",
                content=put,
                headers=[("content-type", "application/fhir+json"), (header, raw)],
            )
            assert_clear(res)
        assert_clear(client.get("/fhir/Patient", headers=[("authorization", b"Bearer " + raw)]))
    entries: list[dict[str, Any]] = [
        {"request": {"method": "GET", "url": f"Patient/{value}"}},
        {"request": {"method": "GET", "url": f"Patient?name={_url(value)}"}},
        {"request": {"method": "GET", "url": f"Patient/victim/_history/{value}"}},
        {"request": {"method": "DELETE", "url": f"Patient?_id={_url(value)}"}},
        {
            "request": {"method": "PUT", "url": "Patient/victim", "ifMatch": value},
            "resource": {"resourceType": "Patient", "id": "victim"},
        },
        {"request": {"method": value, "url": value}},
        {"fullUrl": value, "request": {"method": "POST", "url": "Patient", "ifNoneExist": value},
         "resource": {"resourceType": "Patient", "name": [{"family": value}]}},
    ]  # fmt: skip
    for kind in ("batch", "transaction"):
        for entry in entries:
            bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
            res = client.post(
                "/fhir", content=json.dumps(bundle).encode("utf-8", "surrogatepass"), headers=FHIR
            )
            assert_clear(res)
            if res.status_code == 200:
                for item in res.json().get("entry", []):
                    status = item["response"]["status"]
                    assert not status.startswith("5"), item


def test_unicode_edge_cases_round_trip(client: TestClient) -> None:
    """Valid but unusual text is stored and returned exactly, and found by search."""
    family = "Z\u0308oe \u202e\ufeff\u200d\U0001f469\u200d\u2695\ufe0f \u00df\u0130 'O\"Brien; --"
    body = {"resourceType": "Patient", "name": [{"family": family, "given": ["\u0000x"]}]}
    res = client.post("/fhir/Patient", content=json.dumps(body), headers=FHIR)
    assert res.status_code == 201, res.text
    rid = res.json()["id"]
    got = client.get(f"/fhir/Patient/{rid}").json()
    assert got["name"][0] == {"family": family, "given": ["\u0000x"]}
    found = client.get("/fhir/Patient", params={"family": family})
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [rid]


def test_oversized_body_is_413_before_it_is_read(
    client: TestClient, vault: Vault, seeded: tuple[str, int]
) -> None:
    limit = vault.settings.max_body_bytes
    big = b'{"resourceType":"Patient","name":[{"family":"' + b"a" * limit + b'"}]}'
    res = client.post("/fhir/Patient", content=big, headers=FHIR)
    assert res.status_code == 413
    assert_clear(res)

    def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    res = client.post("/fhir/Patient", content=chunks(), headers=FHIR)  # no Content-Length
    assert res.status_code == 413
    res = client.post("/fhir/Patient", content=b"{}", headers={**FHIR, "content-length": "x"})
    assert res.status_code in (400, 413)
    assert_untouched(client, vault, seeded)


def test_deeply_nested_json_is_400(client: TestClient) -> None:
    for depth in (65, 1000, 100_000):
        _nested(client, depth)


def _nested(client: TestClient, depth: int) -> None:
    for body in (
        b"[" * depth + b"]" * depth,
        b'{"resourceType":"Patient","extension":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}",
    ):
        res = client.post("/fhir/Patient", content=body, headers=FHIR)
        assert res.status_code == 400, res.text[:200]
        assert_clear(res)
        bundle = b'{"resourceType":"Bundle","type":"batch","entry":' + body + b"}"
        assert client.post("/fhir", content=bundle, headers=FHIR).status_code == 400


def test_huge_numbers_of_search_parameters(client: TestClient) -> None:
    many = "&".join(f"name=n{i}" for i in range(2000))
    res = client.get(f"/fhir/Patient?{many}")
    assert res.status_code == 400 and "100" in res.json()["issue"][0]["diagnostics"]
    ors = ",".join(f"n{i}" for i in range(5000))
    assert_clear(client.get(f"/fhir/Patient?name={ors}"))
    assert client.get(f"/fhir/Patient?name={ors}").status_code == 400
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert client.post("/fhir/Patient/_search", content=many, headers=form).status_code == 400
    chained = "general-practitioner:Practitioner." * 50 + "name=x"
    assert_clear(client.get(f"/fhir/Patient?{chained}"))
    has = "_has:Observation:patient:" * 50 + "code=x"
    assert_clear(client.get(f"/fhir/Patient?{has}"))
    includes = "&".join(
        f"_include=Patient:general-practitioner&_revinclude=Observation:subject{i}"
        for i in range(60)
    )
    assert_clear(client.get(f"/fhir/Patient?{includes}"))


def test_url_and_header_limits(client: TestClient, vault: Vault) -> None:
    settings: Settings = vault.settings
    res = client.get("/fhir/Patient?name=" + "a" * settings.max_url_bytes)
    assert res.status_code == 414
    assert_clear(res)
    res = client.get("/fhir/metadata", headers={"x-big": "a" * settings.max_header_bytes})
    assert res.status_code == 431
    assert_clear(res)
    many = [(f"x-h{i}", "1") for i in range(settings.max_header_count + 1)]
    res = client.get("/fhir/metadata", headers=many)
    assert res.status_code == 431
    assert_clear(res)
    assert client.get("/fhir/metadata", headers={"x-ok": "a" * 1000}).status_code == 200


HOSTILE_BODIES = [
    b'{"resourceType":"Patient","multipleBirthInteger":1e9999}',
    b'{"resourceType":"Patient","multipleBirthInteger":' + b"9" * 5000 + b"}",
    b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}',
    b'{"resourceType":"Patient","resourceType":"Observation"}',
    b'{"resourceType":"Patient","meta":"x"}',
    b'{"resourceType":"Patient","__proto__":{"admin":true}}',
    b'{"resourceType":"Patient","id":"../../x"}',
    b'{"resourceType":"Patient","extension":[{"url":"x","valueDecimal":1e308}]}',
    b'{"resourceType":"Patient","birthDate":"1e9999"}',
    b"\xff\xfe\x00\x00",
    b'{"resourceType":"Patient"' + b"}" * 10,
    b'"just a string"',
    b"[]",
    b"null",
    b'{"resourceType":"Patient","active":"true"}',
    b'{"resourceType":"Patient","name":' + b'[{"given":["a"]},' * 3000 + b"{}" + b"]" + b"}",
]


def test_hostile_bodies(client: TestClient) -> None:
    for body in HOSTILE_BODIES:
        _hostile_body(client, body)


def _hostile_body(client: TestClient, body: bytes) -> None:
    for path in ("/fhir/Patient", "/fhir/Patient/x1"):
        res = client.request(
            "POST" if path == "/fhir/Patient" else "PUT", path, content=body, headers=FHIR
        )
        assert_clear(res)
    patch = {"content-type": "application/json-patch+json"}
    assert_clear(client.patch("/fhir/Patient/x1", content=body, headers=patch))


def test_script_in_a_narrative_is_refused_and_nothing_is_stored(client: TestClient) -> None:
    div = '<div xmlns="http://www.w3.org/1999/xhtml">Ann<script>fetch("/x")</script></div>'
    body = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    res = client.post("/fhir/Patient", content=json.dumps(body), headers=FHIR)
    assert res.status_code == 422  # an invalid resource, as for any other rule
    outcome = res.json()
    assert outcome["issue"][0]["expression"] == ["Patient.text.div"]
    assert "script" not in json.dumps(outcome).replace("outside the basic", "")
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0
