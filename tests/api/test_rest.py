"""The FHIR RESTful API: interactions, versioning, conditions, headers and refusals."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from phivault.api.app import create_app
from phivault.api.http import http_date
from phivault.fhir.resources import parse_instant
from phivault.store.base import HistoryQuery
from phivault.vault import Vault

FHIR = "application/fhir+json"
CT = {"content-type": FHIR}
SYSTEM = "http://hospital.example/mrn"


# -- helpers --------------------------------------------------------------------------------


def patient(family: str = "Ng", rid: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}], **extra}
    if rid is not None:
        body["id"] = rid
    return body


def with_mrn(mrn: str, **extra: Any) -> dict[str, Any]:
    return patient(identifier=[{"system": SYSTEM, "value": mrn}], **extra)


def post(client: TestClient, rtype: str, body: Any, **headers: str) -> httpx.Response:
    return client.post(f"/fhir/{rtype}", content=json.dumps(body), headers={**CT, **headers})


def put(client: TestClient, path: str, body: Any, **headers: str) -> httpx.Response:
    return client.put(f"/fhir/{path}", content=json.dumps(body), headers={**CT, **headers})


def create(client: TestClient, body: dict[str, Any]) -> str:
    res = post(client, body["resourceType"], body)
    assert res.status_code == 201, res.text
    rid: str = res.json()["id"]
    return rid


def outcome(res: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an error response is a well-formed OperationOutcome and return it."""
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith(FHIR)
    body: dict[str, Any] = res.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"], body
    for issue in body["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert issue["code"]
    assert "Traceback" not in res.text
    return body


def history_total(vault: Vault) -> int:
    return vault.store.history_total(HistoryQuery())


def follow(client: TestClient, url: str) -> Iterator[dict[str, Any]]:
    """Every page of a paged bundle, following `next` links."""
    seen = 0
    while url:
        res = client.get(url)
        assert res.status_code == 200, res.text
        page = res.json()
        yield page
        links = {link["relation"]: link["url"] for link in page.get("link", [])}
        url = links.get("next", "")
        seen += 1
        assert seen < 100, "paging does not end"


def history_pairs(bundle: dict[str, Any]) -> list[tuple[str, str, int]]:
    out = []
    for entry in bundle.get("entry", []):
        rtype, rid = urlsplit(entry["fullUrl"]).path.split("/")[-2:]
        etag = entry["response"]["etag"]
        out.append((rtype, rid, int(etag.removeprefix('W/"').removesuffix('"'))))
    return out


# -- read, vread, create ------------------------------------------------------------------------


def test_create_assigns_id_and_sets_headers(client: TestClient) -> None:
    res = post(client, "Patient", patient(rid="client-chosen"))
    assert res.status_code == 201, res.text
    body = res.json()
    rid = body["id"]
    assert rid != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert urlsplit(res.headers["location"]).path == f"/fhir/Patient/{rid}/_history/1"
    assert res.headers["etag"] == 'W/"1"'
    modified = parsedate_to_datetime(res.headers["last-modified"])
    updated = parse_instant(body["meta"]["lastUpdated"])
    assert abs((updated - modified).total_seconds()) < 1
    assert res.headers["content-type"].startswith(FHIR)

    assert client.get("/fhir/Patient/client-chosen").status_code == 404
    got = client.get(f"/fhir/Patient/{rid}")
    assert got.status_code == 200
    assert got.json() == body
    assert got.headers["etag"] == 'W/"1"'
    assert got.headers["last-modified"] == res.headers["last-modified"]


def test_create_twice_gives_distinct_ids(client: TestClient) -> None:
    assert create(client, patient()) != create(client, patient())


def test_accepts_fhir_json_with_charset_and_plain_json(client: TestClient) -> None:
    res = client.post(
        "/fhir/Patient",
        content=json.dumps(patient()),
        headers={"content-type": "application/fhir+json; charset=utf-8"},
    )
    assert res.status_code == 201, res.text
    res = client.post(
        "/fhir/Patient",
        content=json.dumps(patient()),
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    assert res.status_code == 201, res.text


def test_vread_returns_each_version(client: TestClient) -> None:
    rid = create(client, patient("First"))
    assert put(client, f"Patient/{rid}", patient("Second", rid=rid)).status_code == 200

    v1 = client.get(f"/fhir/Patient/{rid}/_history/1")
    v2 = client.get(f"/fhir/Patient/{rid}/_history/2")
    assert v1.status_code == v2.status_code == 200
    assert v1.json()["name"][0]["family"] == "First"
    assert v2.json()["name"][0]["family"] == "Second"
    assert v1.headers["etag"] == 'W/"1"'
    assert v2.headers["etag"] == 'W/"2"'
    outcome(client.get(f"/fhir/Patient/{rid}/_history/3"), 404)
    outcome(client.get(f"/fhir/Patient/{rid}/_history/x1"), 400)


def test_unknown_id_is_404(client: TestClient) -> None:
    body = outcome(client.get("/fhir/Patient/does-not-exist"), 404)
    assert body["issue"][0]["code"] == "not-found"
    outcome(client.get("/fhir/Patient/does-not-exist/_history/1"), 404)
    outcome(client.get("/fhir/Patient/does-not-exist/_history"), 404)
    outcome(client.delete("/fhir/Patient/does-not-exist"), 404)


def test_unknown_type_is_404(client: TestClient) -> None:
    outcome(client.get("/fhir/Foo/1"), 404)
    outcome(post(client, "Foo", {"resourceType": "Foo"}), 404)
    outcome(put(client, "Foo/1", {"resourceType": "Foo", "id": "1"}), 404)
    outcome(client.get("/fhir/Foo/_history"), 404)
    outcome(client.get("/fhir/no/such/endpoint/at/all"), 404)


# -- update ---------------------------------------------------------------------------------


def test_update_increments_version_and_server_owns_meta(client: TestClient) -> None:
    rid = create(client, patient())
    first = client.get(f"/fhir/Patient/{rid}").json()
    time.sleep(0.002)
    sent = patient(
        "Changed",
        rid=rid,
        meta={
            "versionId": "99",
            "lastUpdated": "2001-01-01T00:00:00Z",
            "tag": [{"system": "http://example.org/tags", "code": "keep-me"}],
        },
    )
    res = put(client, f"Patient/{rid}", sent)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["meta"]["versionId"] == "2"
    assert body["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert parse_instant(body["meta"]["lastUpdated"]) >= parse_instant(first["meta"]["lastUpdated"])
    assert body["meta"]["tag"] == sent["meta"]["tag"]
    assert res.headers["etag"] == 'W/"2"'
    assert urlsplit(res.headers["location"]).path == f"/fhir/Patient/{rid}/_history/2"

    got = client.get(f"/fhir/Patient/{rid}").json()
    assert got == body
    assert got["name"][0]["family"] == "Changed"


def test_update_as_create_then_update(client: TestClient) -> None:
    res = put(client, "Patient/client-id-1", patient(rid="client-id-1"))
    assert res.status_code == 201, res.text
    assert res.headers["etag"] == 'W/"1"'
    assert urlsplit(res.headers["location"]).path == "/fhir/Patient/client-id-1/_history/1"
    res = put(client, "Patient/client-id-1", patient("Other", rid="client-id-1"))
    assert res.status_code == 200, res.text
    assert res.headers["etag"] == 'W/"2"'
    assert client.get("/fhir/Patient/client-id-1").json()["name"][0]["family"] == "Other"


def test_update_id_rules(client: TestClient, vault: Vault) -> None:
    outcome(put(client, "Patient/abc", patient(rid="xyz")), 400)
    outcome(put(client, "Patient/abc", patient()), 400)
    outcome(put(client, "Patient", patient(rid="abc")), 405)
    assert vault.store.count_current() == 0


def test_resource_type_must_match_url(client: TestClient, vault: Vault) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    outcome(post(client, "Patient", obs), 400)
    outcome(put(client, "Patient/abc", {**obs, "id": "abc"}), 400)
    outcome(post(client, "Patient", {"name": [{"family": "Ng"}]}), 400)
    assert vault.store.count_current() == 0


# -- delete ---------------------------------------------------------------------------------


def test_delete_lifecycle(client: TestClient) -> None:
    rid = create(client, patient("One"))
    assert put(client, f"Patient/{rid}", patient("Two", rid=rid)).status_code == 200

    res = client.delete(f"/fhir/Patient/{rid}")
    assert res.status_code == 204
    assert res.content == b""
    assert res.headers["etag"] == 'W/"3"'

    gone = outcome(client.get(f"/fhir/Patient/{rid}"), 410)
    assert gone["issue"][0]["code"] == "deleted"
    assert client.get(f"/fhir/Patient/{rid}/_history/1").json()["name"][0]["family"] == "One"
    assert client.get(f"/fhir/Patient/{rid}/_history/2").status_code == 200
    outcome(client.get(f"/fhir/Patient/{rid}/_history/3"), 410)

    # Deleting again changes nothing.
    assert client.delete(f"/fhir/Patient/{rid}").status_code == 204
    outcome(client.get(f"/fhir/Patient/{rid}/_history/4"), 404)

    # An update brings it back as a new version.
    res = put(client, f"Patient/{rid}", patient("Three", rid=rid))
    assert res.status_code in (200, 201), res.text
    assert res.json()["meta"]["versionId"] == "4"
    assert client.get(f"/fhir/Patient/{rid}").json()["name"][0]["family"] == "Three"


# -- history --------------------------------------------------------------------------------


def test_instance_history_newest_first_with_methods(client: TestClient) -> None:
    rid = create(client, patient("A"))
    put(client, f"Patient/{rid}", patient("B", rid=rid))
    put(client, f"Patient/{rid}", patient("C", rid=rid))
    client.delete(f"/fhir/Patient/{rid}")
    other = create(client, patient("Other"))

    res = client.get(f"/fhir/Patient/{rid}/_history")
    assert res.status_code == 200
    bundle = res.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "history"
    assert bundle["total"] == 4
    entries = bundle["entry"]
    assert [e["response"]["etag"] for e in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "PUT", "POST"]
    assert "resource" not in entries[0]
    assert entries[0]["request"]["url"] == f"Patient/{rid}"
    assert entries[3]["request"]["url"] == "Patient"
    assert [e["resource"]["name"][0]["family"] for e in entries[1:]] == ["C", "B", "A"]
    assert all(other not in e["fullUrl"] for e in entries)


def test_history_method_of_update_as_create_is_put(client: TestClient) -> None:
    assert put(client, "Patient/by-put", patient(rid="by-put")).status_code == 201
    entry = client.get("/fhir/Patient/by-put/_history").json()["entry"][0]
    assert entry["request"] == {"method": "PUT", "url": "Patient/by-put"}


def test_type_and_system_history(client: TestClient) -> None:
    p1 = create(client, patient("A"))
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{p1}"},
    }
    o1 = create(client, obs)
    put(client, f"Patient/{p1}", patient("B", rid=p1))
    p2 = create(client, patient("C"))

    by_type = client.get("/fhir/Patient/_history").json()
    assert by_type["type"] == "history"
    assert by_type["total"] == 3
    assert history_pairs(by_type) == [("Patient", p2, 1), ("Patient", p1, 2), ("Patient", p1, 1)]

    system = client.get("/fhir/_history").json()
    assert system["type"] == "history"
    assert system["total"] == 4
    assert history_pairs(system) == [
        ("Patient", p2, 1),
        ("Patient", p1, 2),
        ("Observation", o1, 1),
        ("Patient", p1, 1),
    ]
    stamps = [parse_instant(e["response"]["lastModified"]) for e in system["entry"]]
    assert stamps == sorted(stamps, reverse=True)


def test_history_paging_collects_every_version_once(client: TestClient) -> None:
    expected = set()
    for n in range(3):
        rid = create(client, patient(f"P{n}"))
        expected.add(("Patient", rid, 1))
        for version in (2, 3):
            put(client, f"Patient/{rid}", patient(f"P{n}v{version}", rid=rid))
            expected.add(("Patient", rid, version))
    assert len(expected) == 9

    for count in (1, 2, 4, 9, 50):
        collected: list[tuple[str, str, int]] = []
        pages = list(follow(client, f"/fhir/_history?_count={count}"))
        for page in pages:
            assert page["total"] == 9
            assert len(page.get("entry", [])) <= count
            collected.extend(history_pairs(page))
        assert len(collected) == 9, count
        assert set(collected) == expected, count
        assert len(pages) >= -(-9 // count)

        # Instance history pages the same way, newest first.
        inst: list[tuple[str, str, int]] = []
        for page in follow(client, f"/fhir/Patient/{rid}/_history?_count={count}"):
            inst.extend(history_pairs(page))
        assert inst == [("Patient", rid, 3), ("Patient", rid, 2), ("Patient", rid, 1)], count


def test_history_since(client: TestClient) -> None:
    a = create(client, patient("A"))
    time.sleep(0.01)
    b_res = post(client, "Patient", patient("B"))
    b = b_res.json()["id"]
    since_b = b_res.json()["meta"]["lastUpdated"]
    assert parse_instant(since_b) > parse_instant(
        client.get(f"/fhir/Patient/{a}").json()["meta"]["lastUpdated"]
    )

    only_b = client.get("/fhir/_history", params={"_since": since_b}).json()
    assert history_pairs(only_b) == [("Patient", b, 1)]
    assert only_b["total"] == 1
    typed = client.get("/fhir/Patient/_history", params={"_since": since_b}).json()
    assert history_pairs(typed) == [("Patient", b, 1)]
    both = client.get("/fhir/_history", params={"_since": "2000-01-01T00:00:00Z"}).json()
    assert {p[1] for p in history_pairs(both)} == {a, b}
    future = client.get("/fhir/_history", params={"_since": "2999-01-01"}).json()
    assert future["total"] == 0
    assert "entry" not in future or future["entry"] == []
    outcome(client.get("/fhir/_history", params={"_since": "not-a-date"}), 400)
    outcome(client.get("/fhir/_history", params={"_count": "-1"}), 400)


# -- conditional create and update ----------------------------------------------------------
# Basic: its identifier is not an identifying (blinded) search value, so these tests are
# about the conditional logic itself; Patient identifiers are tested apart below.


def basic(value: str, system: str = SYSTEM, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Basic",
        "code": {"text": "conditional test"},
        "identifier": [{"system": system, "value": value}],
        **extra,
    }


def test_conditional_create(client: TestClient, vault: Vault) -> None:
    cond = {"if-none-exist": f"identifier={SYSTEM}|123"}
    first = post(client, "Basic", basic("123"), **cond)
    assert first.status_code == 201, first.text
    rid = first.json()["id"]

    again = post(client, "Basic", basic("123", created="2020-01-01"), **cond)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == rid
    assert again.json() == first.json()
    assert "created" not in again.json()
    assert vault.store.count_current("Basic") == 1
    assert vault.store.current("Basic", rid).version == 1  # type: ignore[union-attr]

    # The same value in another system is another identifier.
    other = post(
        client, "Basic", basic("123", "urn:x"), **{"if-none-exist": "identifier=urn:x|123"}
    )
    assert other.status_code == 201
    assert other.json()["id"] != rid
    # Without a system both match: more than one -> 412, nothing created.
    before = vault.store.count_current()
    outcome(post(client, "Basic", basic("123"), **{"if-none-exist": "identifier=123"}), 412)
    assert vault.store.count_current() == before

    # Unsupported condition parameters are refused, never ignored.
    outcome(post(client, "Basic", basic("9"), **{"if-none-exist": "no-such-param=1"}), 400)
    outcome(post(client, "Basic", basic("9"), **{"if-none-exist": "identifier="}), 400)
    assert vault.store.count_current() == before


def test_conditional_create_with_two_matches_is_412(client: TestClient, vault: Vault) -> None:
    create(client, basic("dup"))
    create(client, basic("dup"))
    cond = {"if-none-exist": f"identifier={SYSTEM}|dup"}
    outcome(post(client, "Basic", basic("dup"), **cond), 412)
    assert vault.store.count_current("Basic") == 2


def test_conditional_create_ignores_deleted(client: TestClient) -> None:
    rid = create(client, basic("del"))
    assert client.delete(f"/fhir/Basic/{rid}").status_code == 204
    res = post(client, "Basic", basic("del"), **{"if-none-exist": f"identifier={SYSTEM}|del"})
    assert res.status_code == 201
    assert res.json()["id"] != rid


def test_conditional_update(client: TestClient, vault: Vault) -> None:
    url = f"Basic?identifier={SYSTEM}|cu-1"
    res = put(client, url, basic("cu-1"))
    assert res.status_code == 201, res.text
    rid = res.json()["id"]

    res = put(client, url, basic("cu-1", created="2021-02-03"))
    assert res.status_code == 200, res.text
    assert res.json()["id"] == rid
    assert res.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/Basic/{rid}").json()["created"] == "2021-02-03"
    assert vault.store.count_current("Basic") == 1

    # A body id that differs from the match is refused.
    outcome(put(client, url, {**basic("cu-1"), "id": "someone-else"}), 400)

    create(client, basic("cu-1"))
    outcome(put(client, url, basic("cu-1", created="1999-09-09")), 412)
    assert client.get(f"/fhir/Basic/{rid}").json()["created"] == "2021-02-03"
    assert vault.store.count_current("Basic") == 2


def test_conditional_create_and_update_on_patient_identifier(
    client: TestClient, vault: Vault
) -> None:
    cond = {"if-none-exist": f"identifier={SYSTEM}|mrn-1"}
    first = post(client, "Patient", with_mrn("mrn-1"), **cond)
    assert first.status_code == 201, first.text
    rid = first.json()["id"]
    again = post(client, "Patient", with_mrn("mrn-1"), **cond)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == rid
    res = put(client, f"Patient?identifier={SYSTEM}|mrn-1", with_mrn("mrn-1", gender="female"))
    assert res.status_code == 200, res.text
    assert res.json()["id"] == rid
    assert vault.store.count_current("Patient") == 1


# -- If-Match -------------------------------------------------------------------------------


def test_if_match(client: TestClient) -> None:
    rid = create(client, patient("A"))
    ok = put(client, f"Patient/{rid}", patient("B", rid=rid), **{"if-match": 'W/"1"'})
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == 'W/"2"'

    stale = put(client, f"Patient/{rid}", patient("C", rid=rid), **{"if-match": 'W/"1"'})
    assert outcome(stale, 412)["issue"][0]["code"] == "conflict"
    assert client.get(f"/fhir/Patient/{rid}").json()["name"][0]["family"] == "B"

    for garbage in ("abc", 'W/"x"', "*", 'W/""'):
        outcome(put(client, f"Patient/{rid}", patient("D", rid=rid), **{"if-match": garbage}), 400)
    assert client.get(f"/fhir/Patient/{rid}").headers["etag"] == 'W/"2"'

    current = put(client, f"Patient/{rid}", patient("E", rid=rid), **{"if-match": 'W/"2"'})
    assert current.status_code == 200
    outcome(put(client, "Patient/nobody", patient(rid="nobody"), **{"if-match": 'W/"1"'}), 412)
    outcome(client.get("/fhir/Patient/nobody"), 404)


# -- Prefer ---------------------------------------------------------------------------------


def test_prefer_return(client: TestClient) -> None:
    minimal = post(client, "Patient", patient(), prefer="return=minimal")
    assert minimal.status_code == 201
    assert minimal.content == b""
    rid = urlsplit(minimal.headers["location"]).path.split("/")[3]
    assert minimal.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/Patient/{rid}").status_code == 200

    oo = put(client, f"Patient/{rid}", patient("X", rid=rid), prefer="return=OperationOutcome")
    assert oo.status_code == 200
    body = oo.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "information"
    assert oo.headers["etag"] == 'W/"2"'

    rep = put(client, f"Patient/{rid}", patient("Y", rid=rid), prefer="return=representation")
    assert rep.status_code == 200
    assert rep.json()["resourceType"] == "Patient"
    assert rep.json()["meta"]["versionId"] == "3"

    upd_min = put(client, f"Patient/{rid}", patient("Z", rid=rid), prefer="return=minimal")
    assert upd_min.status_code == 200
    assert upd_min.content == b""
    assert upd_min.headers["etag"] == 'W/"4"'


# -- content negotiation and malformed input --------------------------------------------------


def test_xml_and_other_media_types_refused(client: TestClient, vault: Vault) -> None:
    xml = '<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient>'
    res = client.post(
        "/fhir/Patient", content=xml, headers={"content-type": "application/fhir+xml"}
    )
    outcome(res, 415)
    res = client.put("/fhir/Patient/x", content=xml, headers={"content-type": "application/xml"})
    outcome(res, 415)
    res = client.post(
        "/fhir/Patient", content=json.dumps(patient()), headers={"content-type": "text/plain"}
    )
    outcome(res, 415)
    res = client.post("/fhir/Patient", content=json.dumps(patient()))
    outcome(res, 415)
    assert vault.store.count_current() == 0


def test_accept_xml_only_is_406(client: TestClient) -> None:
    rid = create(client, patient())
    outcome(client.get(f"/fhir/Patient/{rid}", headers={"accept": "application/fhir+xml"}), 406)
    outcome(client.get("/fhir/metadata", headers={"accept": "application/fhir+xml"}), 406)
    outcome(client.get(f"/fhir/Patient/{rid}", params={"_format": "xml"}), 406)
    res = post(client, "Patient", patient(), accept="application/fhir+xml")
    outcome(res, 406)
    assert client.get(f"/fhir/Patient/{rid}", headers={"accept": FHIR}).status_code == 200
    assert client.get(f"/fhir/Patient/{rid}", headers={"accept": "*/*"}).status_code == 200


def test_format_is_found_however_the_query_spells_it(client: TestClient) -> None:
    # Only a query that could name _format is parsed: percent-encoding must not hide it.
    rid = create(client, patient())
    for query in ("%5Fformat=xml", "_form%61t=xml", "a=1&_format=application/fhir%2Bxml"):
        outcome(client.get(f"/fhir/Patient/{rid}?{query}"), 406)
    for query in ("", "_format=json", "_pretty=true", "x=%20"):
        assert client.get(f"/fhir/Patient/{rid}?{query}").status_code == 200, query


MALFORMED = {
    "truncated": b'{"resourceType": "Patient", "name": [',
    "text": b"not json at all",
    "empty": b"",
    "blank": b"   ",
    "array": b'[{"resourceType": "Patient"}]',
    "string": b'"Patient"',
    "null": b"null",
    "trailing": b'{"resourceType": "Patient"} trailing',
    "bad-utf8": b'{"resourceType": "Patient", "name": [{"family": "\xff\xfe"}]}',
}


def test_malformed_body_is_400(client: TestClient, vault: Vault) -> None:
    for case, raw in MALFORMED.items():
        res = client.post("/fhir/Patient", content=raw, headers=CT)
        body = outcome(res, 400)
        assert body["issue"][0]["code"] in ("structure", "invalid"), case
        outcome(client.put("/fhir/Patient/m1", content=raw, headers=CT), 400)
        outcome(client.put(f"/fhir/Patient?identifier={SYSTEM}|m", content=raw, headers=CT), 400)
    assert vault.store.count_current() == 0
    assert history_total(vault) == 0


def test_deeply_nested_json_is_400(client: TestClient, vault: Vault) -> None:
    nested = b'{"resourceType":"Patient","extension":' + b"[" * 200 + b"]" * 200 + b"}"
    outcome(client.post("/fhir/Patient", content=nested, headers=CT), 400)
    deep_obj = b'{"a":' * 200 + b"1" + b"}" * 200
    outcome(client.post("/fhir/Patient", content=deep_obj, headers=CT), 400)
    assert vault.store.count_current() == 0


def _small_client(vault: Vault) -> TestClient:
    settings = dataclasses.replace(vault.settings, max_body_bytes=1000)
    return TestClient(create_app(vault.service, settings), base_url="http://testserver")


def test_oversized_body_is_413(vault: Vault) -> None:
    big = patient("Big", text={"status": "generated", "div": "<div>" + "x" * 2000 + "</div>"})
    with _small_client(vault) as small:
        outcome(post(small, "Patient", big), 413)
        outcome(put(small, "Patient/big", {**big, "id": "big"}), 413)
        outcome(put(small, f"Patient?identifier={SYSTEM}|1", big), 413)

        def chunks() -> Iterator[bytes]:
            data = json.dumps(big).encode()
            for i in range(0, len(data), 256):
                yield data[i : i + 256]

        # No Content-Length: the limit is enforced while streaming.
        outcome(small.post("/fhir/Patient", content=chunks(), headers=CT), 413)
        assert vault.store.count_current() == 0
        assert history_total(vault) == 0
        # Within the limit still works.
        assert post(small, "Patient", patient("Small")).status_code == 201
    assert vault.store.count_current() == 1


def test_invalid_id_in_url_is_400(client: TestClient, vault: Vault) -> None:
    for bad in ("a" * 65, "bad!id", "bad_id", "caf%C3%A9", "a%20b"):
        outcome(client.get(f"/fhir/Patient/{bad}"), 400)
        outcome(client.get(f"/fhir/Patient/{bad}/_history"), 400)
        outcome(client.get(f"/fhir/Patient/{bad}/_history/1"), 400)
        outcome(client.delete(f"/fhir/Patient/{bad}"), 400)
        res = client.put(f"/fhir/Patient/{bad}", content=json.dumps(patient(rid=bad)), headers=CT)
        assert 400 <= res.status_code < 500, (bad, res.status_code)
        assert res.json()["resourceType"] == "OperationOutcome"
    assert vault.store.count_current() == 0


def test_longest_valid_id_is_accepted(client: TestClient) -> None:
    rid = "A-z.9" + "x" * 59
    assert len(rid) == 64
    assert put(client, f"Patient/{rid}", patient(rid=rid)).status_code == 201
    assert client.get(f"/fhir/Patient/{rid}").json()["id"] == rid


# -- capability statement -------------------------------------------------------------------


def test_capability_statement(client: TestClient) -> None:
    res = client.get("/fhir/metadata")
    assert res.status_code == 200
    cap = res.json()
    assert cap["resourceType"] == "CapabilityStatement"
    assert cap["fhirVersion"] == "4.0.1"
    assert cap["kind"] == "instance"
    assert any("json" in f for f in cap["format"])
    assert not any("xml" in f for f in cap["format"])
    rest = cap["rest"][0]
    assert rest["mode"] == "server"
    resources = {r["type"]: r for r in rest["resource"]}
    pat = resources["Patient"]
    codes = {i["code"] for i in pat["interaction"]}
    assert {
        "read",
        "vread",
        "create",
        "update",
        "delete",
        "history-instance",
        "history-type",
    } <= codes
    assert pat["conditionalCreate"] is True
    assert pat["conditionalUpdate"] is True
    assert pat["updateCreate"] is True
    assert "Parameters" not in resources
    assert "OperationOutcome" not in resources
    assert {"code": "history-system"} in rest["interaction"]


# -- headers, stack traces, PHI ---------------------------------------------------------------

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
}


def _assert_security_headers(res: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert res.headers.get(name) == value, (res.status_code, name, dict(res.headers))


def test_every_response_has_security_headers(client: TestClient) -> None:
    created = post(client, "Patient", patient())
    rid = created.json()["id"]
    responses = [
        created,
        client.get(f"/fhir/Patient/{rid}"),
        client.get(f"/fhir/Patient/{rid}/_history"),
        client.get("/fhir/_history"),
        client.get("/fhir/metadata"),
        client.get(f"/fhir/Patient?_id={rid}"),
        put(client, f"Patient/{rid}", patient(rid=rid), prefer="return=minimal"),
        client.delete(f"/fhir/Patient/{rid}"),
        client.get(f"/fhir/Patient/{rid}"),  # 410
        client.get("/fhir/Patient/nobody"),  # 404
        client.get("/nowhere"),  # 404 from the router
        client.patch("/fhir/Patient", content=b"{}", headers=CT),  # 405: no such route
        client.post("/fhir/Patient", content=b"{", headers=CT),  # 400
        client.post("/fhir/Patient", content=b"<x/>", headers={"content-type": "text/xml"}),
        client.get("/fhir/metadata", headers={"accept": "application/fhir+xml"}),  # 406
        post(client, "Patient", {"resourceType": "Patient", "birthDate": "x"}),  # 422
    ]
    statuses = {r.status_code for r in responses}
    assert {200, 201, 204, 400, 404, 405, 406, 410, 415, 422} <= statuses
    for res in responses:
        _assert_security_headers(res)


def test_errors_do_not_echo_phi_or_traces(client: TestClient, vault: Vault) -> None:
    bad = patient("Zzyzxphi", birthDate="not-a-date")
    for res in (
        post(client, "Patient", bad),
        put(client, "Patient/p1", {**bad, "id": "p1"}),
        put(client, f"Patient?identifier={SYSTEM}|x", bad),
    ):
        body = outcome(res, 422)
        expressions = [e for i in body["issue"] for e in i.get("expression", [])]
        assert "Patient.birthDate" in expressions
        assert "Zzyzxphi" not in res.text
        assert "not-a-date" not in res.text
    # Other refusals do not quote the body either.
    for res in (
        client.post("/fhir/Patient", content=b'{"name":[{"family":"Zzyzxphi"}],"x":', headers=CT),
        put(client, "Patient/p2", {**patient("Zzyzxphi"), "id": "Zzyzxphi-id"}),
        post(client, "Patient", {**patient("Zzyzxphi"), "active": "Zzyzxphi-active"}),
        post(client, "Patient", {**patient("Zzyzxphi"), "telecom": "Zzyzxphi-telecom"}),
    ):
        assert 400 <= res.status_code < 500
        assert "Zzyzxphi" not in res.text
        assert "Traceback" not in res.text
    assert vault.store.count_current() == 0


# -- R4 validation at the API -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"resourceType": "Patient", "birthDate": "2020-13-45"}, "Patient.birthDate"),
        ({"resourceType": "Patient", "name": {"family": "Ng"}}, "Patient.name"),
        ({"resourceType": "Patient", "name": [{"given": "Al"}]}, "Patient.name[0].given"),
        ({"resourceType": "Patient", "unknownElement": 1}, "Patient.unknownElement"),
        ({"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
        pytest.param(
            {"resourceType": "Patient", "active": "true"},
            "Patient.active",
            id="boolean-as-string",
        ),
        pytest.param(
            {"resourceType": "Patient", "multipleBirthInteger": "3"},
            "Patient.multipleBirthInteger",
            id="integer-as-string",
        ),
        pytest.param(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {"value": "5.2"},
            },
            "Observation.valueQuantity.value",
            id="decimal-as-string",
        ),
        pytest.param(
            {"resourceType": "Patient", "gender": "unknown-code"},
            "Patient.gender",
            id="gender-outside-value-set",
        ),
        pytest.param(
            {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}},
            "Observation.status",
            id="status-outside-value-set",
        ),
    ],
)
def test_invalid_resource_is_422(
    client: TestClient, vault: Vault, body: dict[str, Any], path: str
) -> None:
    res = post(client, body["resourceType"], body)
    out = outcome(res, 422)
    expressions = [e for i in out["issue"] for e in i.get("expression", [])]
    assert any(e == path or e.startswith(path) for e in expressions), expressions
    assert vault.store.count_current() == 0


def test_http_date_of_an_instant() -> None:
    assert http_date("2026-11-29T20:19:42.123Z") == "Sun, 29 Nov 2026 20:19:42 GMT"
    assert http_date("2024-02-29T23:59:59.999+02:00") == "Thu, 29 Feb 2024 21:59:59 GMT"
    assert http_date("2026-11-29T20:19:42.123Z") == "Sun, 29 Nov 2026 20:19:42 GMT"  # cached
