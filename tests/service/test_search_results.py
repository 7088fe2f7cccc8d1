"""Chains, _has, _include/_revinclude, _sort, paging, _summary/_elements, _total, the audit
entry, compartments, conditional interactions and reindex; both backends, encryption on.
Expectations are worked out by hand for the clinic in search_data.py."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from phivault.cli.main import cli
from phivault.errors import BadRequest, Gone, NotFound, UnsupportedSearchParameter
from phivault.fhir.search.shaping import SUBSETTED
from phivault.service.reindex import reindex
from phivault.vault import Vault
from tests.service.search_data import CTX, ids, ordered, run

OBS = "Observation"


# -- chains and reverse chains ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtype", "query", "expected"),
    [
        # Observations whose subject is a Patient matching the chained parameter
        (OBS, "subject:Patient.birthdate=1980", {"obs-1", "obs-2", "obs-3", "obs-5"}),
        (OBS, "subject:Patient.gender=female", {"obs-3", "obs-4", "obs-5"}),
        (OBS, "subject.family=smith", {"obs-1", "obs-2", "obs-3", "obs-5"}),
        (OBS, "subject:Patient.identifier=urn:mrn|A1", {"obs-1", "obs-2"}),
        (OBS, "patient.family=jones&code=29463-7", {"obs-4"}),
        (OBS, "performer:Practitioner.family=house", {"obs-4"}),
        # an encrypted prefix longer than the index: the inner match is re-checked
        ("Encounter", "subject:Patient.family=Müller-Lüdenscheidt", {"enc-d"}),
        ("Encounter", "subject.family=muller", {"enc-d", "enc-e"}),
        # Patients referenced by some resource matching the inner parameter
        ("Patient", "_has:Observation:patient:code=29463-7", {"pat-a", "pat-c"}),
        ("Patient", "_has:Observation:subject:status=preliminary", {"pat-b"}),
        ("Patient", "_has:Encounter:subject:status=finished", {"pat-d", "pat-e"}),
        ("Patient", "_has:Observation:patient:code=29463-7&gender=male", {"pat-a"}),
        ("Practitioner", "_has:Observation:performer:status=amended", {"prac-1"}),
        ("Organization", "_has:Patient:organization:family=smith", {"org-1"}),
    ],
)
def test_chains(search_vault: Vault, rtype: str, query: str, expected: set[str]) -> None:
    assert ids(search_vault, rtype, query) == expected


# -- _include and _revinclude -----------------------------------------------------------------


def included(vault: Vault, rtype: str, query: str) -> tuple[set[str], set[str]]:
    result = run(vault, rtype, query)
    return {e.rid for e in result.matches}, {e.rid for e in result.included}


@pytest.mark.parametrize(
    ("rtype", "query", "matches", "extra"),
    [
        (OBS, "code=29463-7&_include=Observation:subject", {"obs-2", "obs-4"}, {"pat-a", "pat-c"}),
        # a typed include only follows references to that type
        (OBS, "_id=obs-4&_include=Observation:performer:Practitioner", {"obs-4"}, {"prac-1"}),
        (OBS, "_id=obs-4&_include=Observation:performer:Organization", {"obs-4"}, set()),
        (OBS, "_id=obs-4&_include=*", {"obs-4"}, {"pat-c", "prac-1"}),
        # without :iterate, Patient:organization does not apply to the included patient
        (
            OBS,
            "_id=obs-1&_include=Observation:subject&_include=Patient:organization",
            {"obs-1"},
            {"pat-a"},
        ),
        (
            OBS,
            "_id=obs-1&_include=Observation:subject&_include:iterate=Patient:organization",
            {"obs-1"},
            {"pat-a", "org-1"},
        ),
        ("Patient", "_id=pat-a&_revinclude=Observation:subject", {"pat-a"}, {"obs-1", "obs-2"}),
        (
            "Organization",
            "_id=org-1&_revinclude=Patient:organization&_revinclude:iterate=Observation:subject",
            {"org-1"},
            {"pat-a", "obs-1", "obs-2"},
        ),
        # a resource that is a match is not repeated as an include
        (
            OBS,
            "subject=pat-a&_include=Observation:subject&_revinclude=Observation:subject",
            {"obs-1", "obs-2"},
            {"pat-a"},
        ),
    ],
)
def test_includes(
    search_vault: Vault, rtype: str, query: str, matches: set[str], extra: set[str]
) -> None:
    assert included(search_vault, rtype, query) == (matches, extra)


# -- sorting ----------------------------------------------------------------------------------


def test_sort_on_several_keys(search_vault: Vault) -> None:
    # code ascending ("29463-7" < "72166-2" < "8302-2" < "8867-4", as text), then date
    # descending with missing dates last.
    assert ordered(search_vault, OBS, "_sort=code,-date") == [
        "obs-2",  # 29463-7, 2021-06-15
        "obs-4",  # 29463-7, 2019
        "obs-5",  # 72166-2
        "obs-3",  # 8302-2, 2022
        "obs-1",  # 8302-2, 2021
        "obs-6",  # 8302-2, no date
        "obs-7",  # 8867-4
    ]


def test_sort_directions_and_missing_values(search_vault: Vault) -> None:
    assert ordered(search_vault, OBS, "_sort=-value-quantity") == [
        "obs-1",  # 180
        "obs-3",  # 165
        "obs-4",  # 100
        "obs-2",  # 80.5
        "obs-6",  # 5.4
        "obs-5",  # no value: last, by id
        "obs-7",
    ]
    assert ordered(search_vault, "Organization", "_sort=name") == ["org-1", "org-2", "org-3"]
    assert ordered(search_vault, "Organization", "_sort=-name") == ["org-3", "org-2", "org-1"]
    assert ordered(search_vault, "Patient", "_sort=gender,-_id") == [
        "pat-c",
        "pat-b",
        "pat-e",
        "pat-d",
        "pat-a",
    ]
    assert ordered(search_vault, "ValueSet", "_sort=-_id") == ["vs-3", "vs-2", "vs-1"]


# -- paging -----------------------------------------------------------------------------------


def basic(code: str, created: str) -> dict[str, Any]:
    return {
        "resourceType": "Basic",
        "code": {"coding": [{"system": "urn:page", "code": code}]},
        "created": created,
    }


def pages(
    vault: Vault, query: str, cursor: str | None, *, backward: bool, between: Any = None
) -> list[list[str]]:
    """Follow next links (previous links when `backward`) from `cursor`; the pages seen."""
    seen: list[list[str]] = []
    for _ in range(100):
        result = run(vault, "Basic", query + (f"&_cursor={cursor}" if cursor else ""))
        assert len(result.matches) <= 5
        seen.append([e.rid for e in result.matches])
        cursor = result.previous_cursor if backward else result.next_cursor
        if cursor is None:
            return seen
        if between is not None:
            between()
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("order", ["", "&_sort=created", "&_sort=-created,_id"])
def test_paging_is_stable_while_resources_are_created(search_vault: Vault, order: str) -> None:
    code = uuid.uuid4().hex[:12]
    svc = search_vault.service
    originals = {
        svc.create(CTX, "Basic", basic(code, f"2020-01-{day:02d}")).version.rid
        for day in range(1, 24)
    }
    created: list[str] = []
    days = iter(range(100))

    def insert_two() -> None:  # new ones sort before and after the current page
        for _ in range(2):
            day = 1 + next(days) * 7 % 28
            rid = svc.create(CTX, "Basic", basic(code, f"2020-01-{day:02d}")).version.rid
            created.append(rid)

    query = f"code=urn:page|{code}&_count=5{order}"
    walked = pages(search_vault, query, None, backward=False, between=insert_two)
    forward = [rid for page in walked for rid in page]
    assert len(forward) == len(set(forward)), "a resource was returned twice"
    assert originals <= set(forward), "a resource that existed throughout was skipped"
    assert set(forward) <= originals | set(created)
    # From the last page, previous links lead back over everything, each once, in order.
    last = run(search_vault, "Basic", query)
    while last.next_cursor is not None:
        last = run(search_vault, "Basic", f"{query}&_cursor={last.next_cursor}")
    assert last.previous_cursor is not None
    back = pages(search_vault, query, last.previous_cursor, backward=True)
    backward = [rid for page in reversed(back) for rid in page] + [e.rid for e in last.matches]
    assert len(backward) == len(set(backward))
    assert set(backward) == originals | set(created)
    whole = run(search_vault, "Basic", query.replace("_count=5", "_count=100"))
    assert backward == [e.rid for e in whole.matches]


def test_paging_skips_deleted_resources_without_skipping_others(search_vault: Vault) -> None:
    code = uuid.uuid4().hex[:12]
    svc = search_vault.service
    made = [svc.create(CTX, "Basic", basic(code, "2020-01-01")).version.rid for _ in range(9)]
    first = run(search_vault, "Basic", f"code=urn:page|{code}&_count=3")
    rest = [rid for rid in sorted(made) if rid not in {e.rid for e in first.matches}]
    svc.delete(CTX, "Basic", rest[0])
    seen = [e.rid for e in first.matches]
    cursor = first.next_cursor
    while cursor:
        page = run(search_vault, "Basic", f"code=urn:page|{code}&_count=3&_cursor={cursor}")
        seen += [e.rid for e in page.matches]
        cursor = page.next_cursor
    assert seen == sorted(set(made) - {rest[0]})


def test_a_tampered_cursor_is_a_clean_400(search_vault: Vault) -> None:
    for cursor in ("x", "eyJhIjoxfQ", "WyJuIixbMSwyLDNdXQ", "WyJuIixbMV1d"):
        with pytest.raises(BadRequest) as caught:
            run(search_vault, OBS, f"_sort=date&_cursor={cursor}")
        assert "cursor" in caught.value.message


# -- _summary, _elements, _total --------------------------------------------------------------


def bodies(vault: Vault, rtype: str, query: str) -> list[dict[str, Any]]:
    return [orjson.loads(e.body) for e in run(vault, rtype, query).matches]


def test_elements_keep_the_asked_and_mandatory_elements_and_mark_subsetted(
    search_vault: Vault,
) -> None:
    (found,) = bodies(search_vault, OBS, "_id=obs-1&_elements=subject")
    # Observation's mandatory elements are status and code.
    assert set(found) == {"resourceType", "id", "meta", "status", "code", "subject"}
    assert SUBSETTED in found["meta"]["tag"]


def test_elements_nested_paths_keep_the_named_children_and_mandatory_ones(
    search_vault: Vault,
) -> None:
    (pat,) = bodies(search_vault, "Patient", "_id=pat-a&_elements=name.family,gender")
    assert set(pat) == {"resourceType", "id", "meta", "name", "gender"}
    assert pat["name"] == [{"family": "Smith"}]  # given dropped inside each name
    assert SUBSETTED in pat["meta"]["tag"]
    # a whole element wins over a path into it; a resource-type prefix is allowed
    (whole,) = bodies(search_vault, "Patient", "_id=pat-a&_elements=Patient.name,name.family")
    assert whole["name"] == [{"family": "Smith", "given": ["John"]}]
    # a choice element by its base name, a path into its type: valueQuantity.value only;
    # Quantity has no mandatory element, Observation keeps status and code
    (obs,) = bodies(search_vault, OBS, "_id=obs-1&_elements=value.value")
    assert set(obs) == {"resourceType", "id", "meta", "status", "code", "valueQuantity"}
    assert obs["valueQuantity"] == {"value": 180}
    # a path into a type whose children are mandatory keeps them: subject.display asked,
    # Reference has none, so only what was asked
    (ref,) = bodies(search_vault, OBS, "_id=obs-1&_elements=subject.display")
    assert ref["subject"] == {}


def test_summary_modes(search_vault: Vault) -> None:
    (summary,) = bodies(search_vault, "Patient", "_id=pat-a&_summary=true")
    assert {"name", "identifier", "birthDate", "managingOrganization"} <= set(summary)
    # generalPractitioner, maritalStatus and text are not summary elements of Patient
    assert not {"generalPractitioner", "maritalStatus", "text"} & set(summary)
    assert SUBSETTED in summary["meta"]["tag"]
    (text,) = bodies(search_vault, "Patient", "_id=pat-a&_summary=text")
    assert set(text) == {"resourceType", "id", "meta", "text"}
    (data,) = bodies(search_vault, "Patient", "_id=pat-a&_summary=data")
    assert "text" not in data and "maritalStatus" in data
    (full,) = bodies(search_vault, "Patient", "_id=pat-a&_summary=false")
    assert "text" in full and "tag" not in full.get("meta", {})
    count = run(search_vault, OBS, "code=8302-2&_summary=count")
    assert (count.matches, count.total) == ([], 3)


def test_totals(search_vault: Vault) -> None:
    assert run(search_vault, OBS, "code=8302-2").total == 3  # small: counted
    assert run(search_vault, OBS, "code=8302-2&_count=1&_total=accurate").total == 3
    assert run(search_vault, OBS, "code=8302-2&_count=1&_total=estimate").total == 3
    assert run(search_vault, OBS, "code=8302-2&_total=none").total is None
    # re-checked (encrypted, long) prefixes are counted after decryption
    exact = run(search_vault, "Patient", "family=Müller-Lüdenscheidt&_count=0&_total=accurate")
    assert (exact.matches, exact.total) == ([], 1)


def test_count_zero_and_count_one(search_vault: Vault) -> None:
    one = run(search_vault, OBS, "code=8302-2&_count=1")
    assert len(one.matches) == 1 and one.next_cursor is not None
    assert run(search_vault, OBS, "code=8302-2&_count=0").matches == []


# -- compartments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtype", "query", "expected"),
    [
        (OBS, "", {"obs-1", "obs-2"}),
        (OBS, "code=8302-2", {"obs-1"}),
        ("RiskAssessment", "", {"ra-1"}),
        ("Patient", "", {"pat-a"}),
        ("Encounter", "", set()),
    ],
)
def test_patient_compartment(
    search_vault: Vault, rtype: str, query: str, expected: set[str]
) -> None:
    assert ids(search_vault, rtype, query, compartment="pat-a") == expected


def test_compartment_errors(search_vault: Vault) -> None:
    with pytest.raises(NotFound):
        run(search_vault, OBS, "", compartment="nobody")
    with pytest.raises(BadRequest):
        run(search_vault, "Organization", "", compartment="pat-a")


# -- audit ------------------------------------------------------------------------------------


def test_one_audit_entry_names_parameters_hides_values_lists_results(search_vault: Vault) -> None:
    store = search_vault.store
    before = store.audit_size()
    run(search_vault, OBS, "subject.family=smith&code=29463-7&_include=Observation:subject")
    assert store.audit_size() == before + 1
    ((_, raw),) = store.audit_entries(before, before + 1)
    entry = orjson.loads(raw)
    assert entry["action"] == "search" and entry["type"] == OBS
    assert [name for name, _ in entry["query"]] == ["subject.family", "code", "_include"]
    assert b"smith" not in raw.lower() and b"29463-7" not in raw
    assert sorted(entry["results"]) == ["Observation/obs-2/1", "Patient/pat-a/1"]


# -- conditional interactions use the engine, strictly ----------------------------------------


def test_conditional_create_on_an_encrypted_identifier(vault: Vault) -> None:
    svc = vault.service
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M-77"}]}
    first = svc.create(CTX, "Patient", body, if_none_exist="identifier=urn:mrn|M-77")
    again = svc.create(CTX, "Patient", body, if_none_exist="identifier=urn:mrn|M-77")
    assert first.created and not again.created
    assert again.version.rid == first.version.rid
    for condition in ("colour=blue", "identifier=urn:mrn|M-77&_count=1", "family:fuzzy=x"):
        with pytest.raises(BadRequest):
            svc.create(CTX, "Patient", body, if_none_exist=condition)
    with pytest.raises(UnsupportedSearchParameter):
        svc.conditional_update(CTX, "Patient", "family:contains=x", body, if_match=None)
    assert vault.store.count_current("Patient") == 1


# -- reindex ----------------------------------------------------------------------------------


def test_reindex_rebuilds_lost_index_rows(vault: Vault, key_file: Any) -> None:
    svc = vault.service
    rid = svc.create(
        CTX, "Patient", {"resourceType": "Patient", "name": [{"family": "Quixote"}]}
    ).version.rid
    assert ids(vault, "Patient", "family=quix") == {rid}
    with vault.store.write() as tx:
        tx.replace_index("Patient", rid, [])
    assert ids(vault, "Patient", "family=quix") == set()
    *_, stats = reindex(svc, CTX, "Patient")
    assert (stats.seen, stats.reindexed, stats.failed) == (1, 1, 0)
    assert ids(vault, "Patient", "family=quix") == {rid}
    with vault.store.write() as tx:
        tx.replace_index("Patient", rid, [])
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "reindex",
            "--data",
            str(vault.settings.data_dir),
            "--key-file",
            str(key_file),
            "--type",
            "Patient",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "reindexed 1" in res.output
    assert ids(vault, "Patient", "family=quix") == {rid}


def test_deleted_resources_are_never_found(vault: Vault) -> None:
    svc = vault.service
    rid = svc.create(CTX, "Patient", {"resourceType": "Patient", "gender": "other"}).version.rid
    svc.delete(CTX, "Patient", rid)
    assert ids(vault, "Patient", "gender=other") == set()
    with pytest.raises(Gone):
        run(vault, OBS, "", compartment=rid)


def test_rechecked_pages_are_bounded_and_still_complete(
    search_vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With at most one candidate decrypted per page, a re-checked search comes back one
    # candidate at a time, with next links, and still finds every match exactly once.
    import phivault.service.search as search_module

    monkeypatch.setattr(search_module, "RECHECK_PAGE_CAP", 1)
    query = "family=müller-lüdenscheid&_count=5"
    seen: list[str] = []
    result = run(search_vault, "Patient", query)
    while True:
        assert len(result.matches) <= 1
        seen += [e.rid for e in result.matches]
        if result.next_cursor is None:
            break
        result = run(search_vault, "Patient", f"{query}&_cursor={result.next_cursor}")
    assert seen == ["pat-d", "pat-e"]


def test_encrypted_date_lookups_are_bounded(search_vault: Vault) -> None:
    years = ",".join(str(y) for y in range(1980, 1991))  # 11 years of day tokens
    with pytest.raises(BadRequest):
        run(search_vault, "Patient", f"birthdate={years}")


def test_last_updated(search_vault: Vault) -> None:
    code = uuid.uuid4().hex[:12]
    svc = search_vault.service
    old = svc.create(CTX, "Basic", basic(code, "2020-01-01")).version
    new = svc.create(CTX, "Basic", basic(code, "2020-01-02")).version
    assert old.last_updated <= new.last_updated
    base = f"code=urn:page|{code}"
    assert ids(search_vault, "Basic", f"{base}&_lastUpdated=ge{new.last_updated}") >= {new.rid}
    assert ids(search_vault, "Basic", f"{base}&_lastUpdated=lt{old.last_updated}") == set()
    assert ids(search_vault, "Basic", f"{base}&_lastUpdated=le{new.last_updated}") == {
        old.rid,
        new.rid,
    }
    newest_first = ordered(search_vault, "Basic", f"{base}&_sort=-_lastUpdated,_id")
    if old.last_updated < new.last_updated:
        assert newest_first == [new.rid, old.rid]
