"""Attack tests on the search paths: a patient-scoped token, a clinician without a care
relationship and a clerk reaching other patients' records through `_include`,
`_revinclude`, chained search, `_has`, compartment search, history and `$everything`.
Each is filtered or refused exactly as if the records did not exist (totals included),
audited, and its response names nothing it may not see."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from phivault.vault import Vault
from tests.access.clinic import Clinic, open_clinic


@pytest.fixture
def clinic(vault: Vault) -> Iterator[Clinic]:
    yield from open_clinic(vault)


def _audit(clinic: Clinic, since: int) -> list[dict[str, Any]]:
    store = clinic.vault.store
    return [orjson.loads(raw) for _, raw in store.audit_entries(since, store.audit_size())]


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") != "outcome"
    }


def _of(clinic: Clinic, rtype: str, patient: str) -> set[str]:
    return {
        f"{rtype}/{r['id']}"
        for r in clinic.resources
        if r["resourceType"] == rtype
        and r.get("subject", {}).get("reference") == f"Patient/{patient}"
    }


def _family(clinic: Clinic, patient: str) -> str:
    found = next(
        r for r in clinic.resources if r["resourceType"] == "Patient" and r["id"] == patient
    )
    return str(found["name"][0]["family"])


@pytest.fixture
def patient_token(clinic: Clinic) -> dict[str, str]:
    user = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    token = clinic.token(user, "patient/*.rs launch/patient", patient=clinic.related)
    return clinic.headers(token)


def _get(clinic: Clinic, url: str, headers: dict[str, str]) -> dict[str, Any]:
    resp = clinic.client.get(url, headers=headers)
    assert resp.status_code == 200, (url, resp.text)
    body: dict[str, Any] = resp.json()
    return body


def test_search_totals_count_only_the_launch_patient(
    clinic: Clinic, patient_token: dict[str, str]
) -> None:
    mine = _of(clinic, "Condition", clinic.related)
    for url in ("/fhir/Condition", "/fhir/Condition?_total=accurate", "/fhir/Condition?_count=1"):
        bundle = _get(clinic, url, patient_token)
        assert _ids(bundle) <= mine
        assert bundle.get("total", len(mine)) == len(mine), url
    counted = _get(clinic, "/fhir/Condition?_summary=count", patient_token)
    assert counted["total"] == len(mine)
    theirs = next(iter(_of(clinic, "Condition", clinic.unrelated))).split("/")[1]
    by_id = _get(clinic, f"/fhir/Condition?_id={theirs}&_total=accurate", patient_token)
    assert by_id["total"] == 0 and not _ids(by_id)  # as if it did not exist


def test_include_and_revinclude_never_reach_another_patient(
    clinic: Clinic, patient_token: dict[str, str]
) -> None:
    allowed = (
        _of(clinic, "Condition", clinic.related)
        | _of(clinic, "Observation", clinic.related)
        | {f"Patient/{clinic.related}"}
    )
    # Everything the demo links to a patient; a hidden one must never come back.
    for url in (
        "/fhir/Condition?_include=Condition:subject",
        "/fhir/Patient?_revinclude=Condition:subject&_revinclude=Observation:subject",
        "/fhir/Observation?_include=Observation:subject&_include:iterate=Patient:general-practitioner",
    ):
        bundle = _get(clinic, url, patient_token)
        patients = {i for i in _ids(bundle) if i.startswith(("Patient/", "Condition/"))}
        assert patients <= allowed, url
        assert clinic.unrelated not in orjson.dumps(bundle).decode()
    revinclude = _get(clinic, "/fhir/Patient?_revinclude=Condition:subject", patient_token)
    assert revinclude["total"] == 1


def test_chained_and_has_searches_do_not_reveal_hidden_records(
    clinic: Clinic, patient_token: dict[str, str]
) -> None:
    family = _family(clinic, clinic.unrelated)
    theirs = next(r for r in clinic.resources if r["resourceType"] == "Condition"
                  and r["subject"]["reference"] == f"Patient/{clinic.unrelated}")  # fmt: skip
    code = theirs["code"]["coding"][0]["code"]
    nobody = "Zzyzxnonexistent"
    for hidden, absent in (
        (f"/fhir/Condition?subject:Patient.family={family}&_total=accurate",
         f"/fhir/Condition?subject:Patient.family={nobody}&_total=accurate"),
        (f"/fhir/Patient?_has:Condition:subject:code={code}&_total=accurate",
         "/fhir/Patient?_has:Condition:subject:code=000000&_total=accurate"),
    ):  # fmt: skip
        got = _get(clinic, hidden, patient_token)
        assert clinic.unrelated not in orjson.dumps(got.get("entry", [])).decode()
        assert _ids(got) <= {f"Patient/{clinic.related}"} | _of(clinic, "Condition", clinic.related)
        assert got["total"] == len(_ids(got))
        assert _get(clinic, absent, patient_token)["total"] == 0
        if hidden.startswith("/fhir/Condition") and family != _family(clinic, clinic.related):
            assert got["total"] == 0  # the other patient's name matched nothing visible
    # A clerk may search patients but never conditions: _has on Condition is refused at
    # type level (403), so it cannot learn who has which diagnosis.
    clerk = clinic.add_user("front-desk")
    headers = clinic.headers(clinic.token(clerk))
    since = clinic.vault.store.audit_size()
    resp = clinic.client.get(f"/fhir/Patient?_has:Condition:subject:code={code}", headers=headers)
    assert resp.status_code == 403
    assert any(e["outcome"] == "4" for e in _audit(clinic, since))


def test_clinician_search_is_limited_to_related_patients(clinic: Clinic) -> None:
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    headers = clinic.headers(clinic.token(doctor))
    bundle = _get(clinic, "/fhir/Condition?_total=accurate&_count=1", headers)
    everyone: set[str] = set()
    page: dict[str, Any] | None = bundle
    while page is not None:
        everyone |= _ids(page)
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        page = _get(clinic, nxt[0].replace("http://testserver", ""), headers) if nxt else None
    assert not everyone & _of(clinic, "Condition", clinic.unrelated)
    assert everyone >= _of(clinic, "Condition", clinic.related)
    assert bundle["total"] == len(everyone)  # pages, links and total agree


def test_compartment_search_of_a_hidden_patient_is_not_found(
    clinic: Clinic, patient_token: dict[str, str]
) -> None:
    since = clinic.vault.store.audit_size()
    hidden = clinic.client.get(f"/fhir/Patient/{clinic.unrelated}/Condition", headers=patient_token)
    absent = clinic.client.get("/fhir/Patient/00000000/Condition", headers=patient_token)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.text.replace(clinic.unrelated, "00000000") == absent.text
    denied = [e for e in _audit(clinic, since) if e["outcome"] == "4"]
    assert denied and all(clinic.unrelated not in orjson.dumps(e).decode() for e in denied)
    mine = _get(clinic, f"/fhir/Patient/{clinic.related}/Condition", patient_token)
    assert _ids(mine) == _of(clinic, "Condition", clinic.related)


def test_everything_of_another_patient_is_not_found(
    clinic: Clinic, patient_token: dict[str, str]
) -> None:
    since = clinic.vault.store.audit_size()
    hidden = clinic.client.get(
        f"/fhir/Patient/{clinic.unrelated}/$everything", headers=patient_token
    )
    absent = clinic.client.get("/fhir/Patient/00000000/$everything", headers=patient_token)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.text.replace(clinic.unrelated, "00000000") == absent.text
    assert any(e["action"] == "everything" and e["outcome"] == "4" for e in _audit(clinic, since))
    mine = _get(clinic, f"/fhir/Patient/{clinic.related}/$everything", patient_token)
    assert clinic.unrelated not in orjson.dumps(mine).decode()


def test_history_lists_and_counts_only_visible_versions(
    clinic: Clinic, patient_token: dict[str, str]
) -> None:
    mine = _of(clinic, "Condition", clinic.related)
    for url in ("/fhir/Condition/_history", "/fhir/_history?_count=500"):
        bundle = _get(clinic, url, patient_token)
        text = orjson.dumps(bundle).decode()
        assert clinic.unrelated not in text
        for theirs in _of(clinic, "Condition", clinic.unrelated):
            assert theirs.split("/")[1] not in text
    typed = _get(clinic, "/fhir/Condition/_history", patient_token)
    assert _ids(typed) == mine
    assert typed.get("total", len(mine)) == len(mine)
    paged = _get(clinic, "/fhir/Condition/_history?_count=1", patient_token)
    assert "total" not in paged or paged["total"] == len(mine)
    since = clinic.vault.store.audit_size()
    _get(clinic, "/fhir/Condition/_history", patient_token)
    logged = orjson.dumps([e for e in _audit(clinic, since) if e["action"] == "history"])
    assert logged  # audited, naming only what was released
    for theirs in _of(clinic, "Condition", clinic.unrelated):
        assert theirs.split("/")[1].encode() not in logged


def test_audit_events_are_for_auditors_only(clinic: Clinic) -> None:
    doctor = clinic.add_user("clinician", practitioner=clinic.clinician_ref)
    auditor = clinic.add_user("auditor")
    denied = clinic.client.get("/fhir/AuditEvent", headers=clinic.headers(clinic.token(doctor)))
    assert denied.status_code == 403
    allowed = clinic.client.get("/fhir/AuditEvent", headers=clinic.headers(clinic.token(auditor)))
    assert allowed.status_code == 200, allowed.text
