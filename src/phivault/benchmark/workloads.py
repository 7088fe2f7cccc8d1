"""The requests each row of the bench table sends, built from the demo clinic generator.

The loaded clinic is `generate_clinic(ClinicSpec(patients, seed=CLINIC_SEED))`; the same
stream gives the ids, MRNs, names and observation codes the reads and searches ask for.
New resources (creates, transaction bundles) come from other seeds, so they never collide
with the loaded clinic's ids. Factories are plain dataclasses: they pickle to the load
generator's process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from phivault.demo.clinic import ClinicSpec, generate_clinic

CLINIC_SEED = 1
CREATE_SEED = 987
BUNDLE_SEED = 4242
MRN_SYSTEM = "http://phivault.example/mrn"
BUNDLE_RESOURCES = 100  # about this many resources per transaction bundle


@dataclass
class Cycle:
    """Request i is requests[i % len(requests)]."""

    requests: list[tuple[str, str, bytes]]

    def __call__(self, i: int) -> tuple[str, str, bytes]:
        return self.requests[i % len(self.requests)]


def gets(paths: list[str]) -> Cycle:
    return Cycle([("GET", p, b"") for p in paths])


@dataclass(frozen=True)
class Subject:
    """One loaded patient and search values that find their data."""

    pid: str
    mrn: str
    family: str
    code: str  # a LOINC code of one of their observations
    since: str  # a year before that observation
    body: bytes  # their Patient resource as loaded


@dataclass
class Clinic:
    patients: int
    resources: int
    subjects: list[Subject]


def _query(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs, quote_via=quote)


def load_facts(patients: int) -> Clinic:
    """What the benches ask for, from the same stream the clinic was loaded from."""
    people: dict[str, tuple[str, str, bytes]] = {}
    found: dict[str, Subject] = {}
    total = 0
    for r in generate_clinic(ClinicSpec(patients=patients, seed=CLINIC_SEED)):
        total += 1
        if r["resourceType"] == "Patient":
            mrn = next(i["value"] for i in r["identifier"] if i.get("system") == MRN_SYSTEM)
            people[r["id"]] = (mrn, r["name"][0]["family"], orjson.dumps(r))
        elif r["resourceType"] == "Observation" and r.get("effectiveDateTime"):
            pid = r["subject"]["reference"].removeprefix("Patient/")
            coding = r["code"]["coding"][0]
            if pid in people and pid not in found and coding.get("system") == "http://loinc.org":
                mrn, family, body = people[pid]
                since = str(int(r["effectiveDateTime"][:4]) - 1)
                found[pid] = Subject(pid, mrn, family, coding["code"], since, body)
    return Clinic(patients, total, list(found.values()))


# -- reads and searches ----------------------------------------------------------------------


def read(clinic: Clinic) -> Cycle:
    return gets([f"/fhir/Patient/{s.pid}" for s in clinic.subjects])


def search_identifier(clinic: Clinic) -> Cycle:
    return gets(
        [
            "/fhir/Patient?" + _query([("identifier", f"{MRN_SYSTEM}|{s.mrn}")])
            for s in clinic.subjects
        ]
    )


def search_name_prefix(clinic: Clinic) -> Cycle:
    """A 3-letter prefix of a family name (FHIR string search matches prefixes)."""
    return gets(["/fhir/Patient?" + _query([("name", s.family[:3])]) for s in clinic.subjects])


def search_observations(clinic: Clinic) -> Cycle:
    return gets(
        [
            "/fhir/Observation?"
            + _query(
                [
                    ("patient", s.pid),
                    ("code", f"http://loinc.org|{s.code}"),
                    ("date", f"ge{s.since}"),
                ]
            )
            for s in clinic.subjects
        ]
    )


def everything(clinic: Clinic) -> Cycle:
    return gets([f"/fhir/Patient/{s.pid}/$everything" for s in clinic.subjects])


# -- writes --------------------------------------------------------------------------------


def _new_patients(count: int) -> Iterator[dict[str, Any]]:
    for r in generate_clinic(ClinicSpec(patients=count, seed=CREATE_SEED)):
        if r["resourceType"] == "Patient":
            yield {k: v for k, v in r.items() if k != "id"}


def create(count: int) -> Cycle:
    """POST Patient: new patients (another seed's), the server assigns ids."""
    bodies = [orjson.dumps(p) for p in _new_patients(max(1, min(count, 500)))]
    return Cycle([("POST", "/fhir/Patient", b) for b in bodies])


def create_clinic_mix(patients: int) -> Cycle:
    """POST the resources of a clinic's day in the demo clinic's proportions (about one
    Patient in nine; Observations, Conditions, Encounters, ... the rest): the loaded
    clinic's resources in the generator's order, each without its id, so they refer to
    patients, encounters and practitioners the server holds; each Patient is a new one
    (another seed's), whose compartment has no data key yet, as in `create`."""
    fresh = _new_patients(max(1, patients))
    requests = []
    for r in generate_clinic(ClinicSpec(patients=max(1, patients), seed=CLINIC_SEED)):
        rtype = r["resourceType"]
        body = (
            next(fresh, None) if rtype == "Patient" else {k: v for k, v in r.items() if k != "id"}
        )
        if body is not None:
            requests.append(("POST", f"/fhir/{rtype}", orjson.dumps(body)))
    return Cycle(requests)


def ceiling_create(count: int, tag: str) -> Cycle:
    """The ceiling's table has a primary key: every insert brings its own id."""
    people = list(_new_patients(max(1, min(count, 500))))
    return Cycle(
        [
            ("POST", "/fhir/Patient", orjson.dumps({**people[i % len(people)], "id": f"{tag}{i}"}))
            for i in range(count)
        ]
    )


def ceiling_read(count: int, tag: str) -> Cycle:
    return gets([f"/fhir/Patient/{tag}{i}" for i in range(count)])


def update(clinic: Clinic) -> Cycle:
    """PUT Patient/{id} of loaded patients, each with a changed phone number."""
    requests = []
    for n, s in enumerate(clinic.subjects):
        body = orjson.loads(s.body)
        body.pop("meta", None)
        body["telecom"] = [{"system": "phone", "value": f"555-{n:07d}", "use": "home"}]
        requests.append(("PUT", f"/fhir/Patient/{s.pid}", orjson.dumps(body)))
    return Cycle(requests)


@dataclass
class Bundles:
    cycle: Cycle
    resources_per_bundle: list[int]

    def resources(self, requests: int) -> int:
        """Resources carried by the first `requests` requests of the cycle."""
        n = len(self.resources_per_bundle)
        return sum(self.resources_per_bundle[i % n] for i in range(requests))


def transaction_bundles(count: int) -> Bundles:
    """Transaction bundles of whole patients (Patient, CareTeam, Encounters, Observations,
    ...) as an EHR feed sends them: POST entries with urn:uuid fullUrls, references within
    the bundle rewritten to them, about BUNDLE_RESOURCES resources each."""
    patients = max(1, count) * BUNDLE_RESOURCES // 9 + 1  # the demo has about 9 per patient
    bundles: list[bytes] = []
    sizes: list[int] = []
    group: list[dict[str, Any]] = []

    def flush() -> None:
        if not group:
            return
        urns = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid4()}" for r in group}
        text = orjson.dumps(group).decode()
        for ref, urn in urns.items():
            text = text.replace(f'"reference":"{ref}"', f'"reference":"{urn}"')
        entries = []
        for resource, urn in zip(orjson.loads(text), urns.values(), strict=True):
            rtype = resource["resourceType"]
            del resource["id"]
            entries.append(
                {"fullUrl": urn, "resource": resource, "request": {"method": "POST", "url": rtype}}
            )
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        bundles.append(orjson.dumps(bundle))
        sizes.append(len(entries))
        group.clear()

    for r in generate_clinic(ClinicSpec(patients=patients, seed=BUNDLE_SEED)):
        if r["resourceType"] in ("Organization", "Location", "Practitioner", "PractitionerRole"):
            continue  # the clinic's staff: already known to the server in a real feed
        if r["resourceType"] == "Patient" and len(group) >= BUNDLE_RESOURCES:
            flush()
            if len(bundles) >= count:
                break
        group.append(r)
    if len(bundles) < count:
        flush()
    return Bundles(Cycle([("POST", "/fhir", b) for b in bundles]), sizes)
