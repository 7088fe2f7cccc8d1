"""System-level search (search.html#all) over the search suite's clinic, both backends:
common parameters across the listed types, lenient/strict handling of the others, one
order across types (sort keys, then type, then id), paging both ways, totals, _include.

The clinic (search_data.py) holds Patients pat-a..pat-e, Observations obs-1..obs-7 (obs-6
carries the tag urn:tags|research), Encounters enc-d, enc-e; they were written in that
order, so _lastUpdated grows in it."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from phivault.errors import BadRequest, InvalidSearchParameter, UnsupportedSearchParameter
from phivault.service.search import SearchResult
from phivault.vault import Vault
from tests.service.search_data import BASE, CTX

PATIENTS = ["pat-a", "pat-b", "pat-c", "pat-d", "pat-e"]
OBSERVATIONS = [f"obs-{n}" for n in range(1, 8)]
SOME = "_id=pat-a,pat-c,obs-1,obs-6,enc-d"


def system(vault: Vault, query: str, cursor: str | None = None) -> SearchResult:
    pairs = parse_qsl(query, keep_blank_values=True)
    if cursor is not None:
        pairs.append(("_cursor", cursor))
    return vault.service.search_system(CTX, pairs, base_url=BASE)


def refs(result: SearchResult) -> list[str]:
    return [f"{e.rtype}/{e.rid}" for e in result.matches]


def test_listed_types_with_a_common_parameter(search_vault: Vault) -> None:
    result = system(search_vault, f"_type=Patient,Observation&{SOME}")
    # type, then id: Observation before Patient; the Encounter is not a listed type
    assert refs(result) == [
        "Observation/obs-1",
        "Observation/obs-6",
        "Patient/pat-a",
        "Patient/pat-c",
    ]
    assert result.total == 4
    assert result.request.used[0] == ("_type", "Patient,Observation")


def test_without_type_every_type_is_searched(search_vault: Vault) -> None:
    assert refs(system(search_vault, SOME)) == [
        "Encounter/enc-d",
        "Observation/obs-1",
        "Observation/obs-6",
        "Patient/pat-a",
        "Patient/pat-c",
    ]
    assert refs(system(search_vault, "_tag=urn:tags|research")) == ["Observation/obs-6"]


def test_a_parameter_not_common_to_the_types_is_reported_or_refused(search_vault: Vault) -> None:
    lenient = system(search_vault, f"_type=Patient,Observation&{SOME}&family=smith")
    assert len(lenient.matches) == 4  # family ignored, not applied to Patients only
    assert lenient.warnings == ("not a search parameter of every searched type: family",)
    # a parameter of every listed type applies to each
    assert refs(system(search_vault, f"_type=Patient&{SOME}&family=smith")) == ["Patient/pat-a"]
    with pytest.raises(UnsupportedSearchParameter):
        search_vault.service.search_system(
            CTX, [("_type", "Patient,Observation"), ("family", "smith")], strict=True
        )
    with pytest.raises(InvalidSearchParameter):
        system(search_vault, "_type=Patient,NoSuchType")


def test_paging_across_types_both_ways(search_vault: Vault) -> None:
    query = "_type=Patient,Observation&_count=3&_id=" + ",".join(PATIENTS + OBSERVATIONS)
    pages: list[list[str]] = []
    cursors: list[str | None] = [None]
    result = system(search_vault, query)
    while True:
        pages.append(refs(result))
        if result.next_cursor is None:
            break
        cursors.append(result.next_cursor)
        result = system(search_vault, query, result.next_cursor)
    expected = [f"Observation/{o}" for o in OBSERVATIONS] + [f"Patient/{p}" for p in PATIENTS]
    assert [r for page in pages for r in page] == expected
    assert [len(p) for p in pages] == [3, 3, 3, 3]
    # back from the third page: the second
    third = system(search_vault, query, cursors[2])
    assert third.previous_cursor is not None
    assert refs(system(search_vault, query, third.previous_cursor)) == pages[1]
    assert result.total == 12


def test_sort_across_types(search_vault: Vault) -> None:
    ids = "_id=pat-a,pat-e,obs-1,obs-7,enc-d"
    newest_first = refs(system(search_vault, f"{ids}&_sort=-_lastUpdated"))
    # written pat-a, pat-e, obs-1, obs-7, enc-d (search_data.py order)
    assert newest_first == [
        "Encounter/enc-d",
        "Observation/obs-7",
        "Observation/obs-1",
        "Patient/pat-e",
        "Patient/pat-a",
    ]
    paged: list[str] = []
    cursor = None
    while True:
        result = system(search_vault, f"{ids}&_sort=-_lastUpdated&_count=2", cursor)
        paged += refs(result)
        cursor = result.next_cursor
        if cursor is None:
            break
    assert paged == newest_first


def test_include_and_summary_count(search_vault: Vault) -> None:
    result = system(search_vault, "_type=Observation&_id=obs-1&_include=Observation:subject")
    assert refs(result) == ["Observation/obs-1"]
    assert [f"{e.rtype}/{e.rid}" for e in result.included] == ["Patient/pat-a"]
    counted = system(search_vault, f"_type=Patient,Observation&{SOME}&_summary=count")
    assert (counted.matches, counted.total) == ([], 4)


def test_a_cursor_of_another_search_is_refused(search_vault: Vault) -> None:
    first = system(search_vault, f"_type=Patient,Observation&{SOME}&_count=1")
    assert first.next_cursor is not None
    with pytest.raises(BadRequest):
        system(search_vault, f"_type=Encounter&{SOME}", first.next_cursor)
