"""Audit entries rendered as FHIR R4 AuditEvent (IHE BALP shape) and the search parameters."""

from __future__ import annotations

from typing import Any

import pytest

from phivault.audit.auditevent import (
    ACT_REASON,
    PSEUDONYM_SYSTEM,
    RESTFUL,
    date_range,
    matches,
    parse_search,
    render,
)
from phivault.audit.entry import index_row_of
from phivault.errors import InvalidSearchParameter, UnsupportedSearchParameter
from phivault.fhir.validation import validate_resource

BASE: dict[str, Any] = {
    "v": 1,
    "time": "2024-03-05T10:11:12.345Z",
    "actor": "dr-who",
    "outcome": "0",
    "client": "10.0.0.7",
}
ENTRIES: list[dict[str, Any]] = [
    {**BASE, "action": "read", "type": "Patient", "id": "p1", "version": 2,
     "patient": "ab" * 16, "data_sha256": "00" * 32, "purpose": "TREAT"},
    {**BASE, "action": "create", "type": "Observation", "id": "o1", "version": 1},
    {**BASE, "action": "search", "type": "Observation", "query": [["code", "abcd"]],
     "results": ["Observation/o1/1", "Observation/o2/3"]},
    {**BASE, "action": "history"},
    {**BASE, "action": "history", "type": "Patient", "id": "p1"},
    {**BASE, "action": "delete", "type": "Patient", "id": "p1", "version": 3},
    {**BASE, "action": "read", "type": "Patient", "id": "nope", "outcome": "4",
     "detail": "NotFound"},
    {**BASE, "action": "login", "outcome": "4", "detail": "InvalidCredentials"},
    {**BASE, "action": "break-glass", "purpose": "patient unconscious in ER"},
    {**BASE, "action": "rotate-kek", "extra": {"keys": "12"}},
    {**BASE, "action": "export", "client": "my-app"},
]  # fmt: skip


@pytest.mark.parametrize("index", range(len(ENTRIES)))
def test_rendered_events_are_valid_r4(index: int) -> None:
    event = render(index, ENTRIES[index])
    validate_resource(event)
    assert event["id"] == str(index)
    assert event["recorded"] == BASE["time"]
    assert event["agent"][0]["who"]["identifier"]["value"] == "dr-who"
    assert event["agent"][0]["requestor"] is True


def test_a_read_in_balp_shape() -> None:
    event = render(0, ENTRIES[0])
    assert event["type"]["code"] == "rest"
    assert event["subtype"][0] == {"system": RESTFUL, "code": "read"}
    assert event["action"] == "R" and event["outcome"] == "0"
    agent = event["agent"][0]
    assert agent["network"] == {"address": "10.0.0.7", "type": "2"}
    assert agent["purposeOfUse"][0]["coding"][0] == {"system": ACT_REASON, "code": "TREAT"}
    what, who = event["entity"]
    assert what["what"]["reference"] == "Patient/p1/_history/2"
    assert what["detail"] == [{"type": "data-sha256", "valueString": "00" * 32}]
    assert who["what"]["identifier"] == {"system": PSEUDONYM_SYSTEM, "value": "ab" * 16}
    assert who["role"]["code"] == "1"  # Patient


def test_history_and_search_and_failures() -> None:
    assert render(3, ENTRIES[3])["subtype"][0]["code"] == "history-system"
    assert render(4, ENTRIES[4])["subtype"][0]["code"] == "history-instance"
    search = render(2, ENTRIES[2])
    assert search["action"] == "E"
    assert [e.get("role", {}).get("code") for e in search["entity"]] == ["24", "4", "4"]
    failed = render(6, ENTRIES[6])
    assert failed["outcome"] == "4" and failed["outcomeDesc"] == "NotFound"
    login = render(7, ENTRIES[7])
    assert login["type"]["code"] == "110114"


@pytest.mark.parametrize(
    ("value", "lo", "hi"),
    [
        ("2024", "2024-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        ("2024-02", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"),
        ("2024-12", "2024-12-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        ("2024-03-05", "2024-03-05T00:00:00.000Z", "2024-03-06T00:00:00.000Z"),
        ("2024-03-05T10:11:12Z", "2024-03-05T10:11:12.000Z", "2024-03-05T10:11:13.000Z"),
        ("2024-03-05T12:11:12+02:00", "2024-03-05T10:11:12.000Z", "2024-03-05T10:11:13.000Z"),
        ("2024-03-05T10:11:12.345Z", "2024-03-05T10:11:12.345Z", "2024-03-05T10:11:12.346Z"),
    ],
)
def test_date_ranges(value: str, lo: str, hi: str) -> None:
    assert date_range(value) == (lo, hi)


def _hits(pairs: list[tuple[str, str]]) -> list[int]:
    search = parse_search(pairs, lambda c: "ab" * 16 if c == "Patient/p1" else "cd" * 16)
    return [i for i, e in enumerate(ENTRIES) if matches(search, i, index_row_of(e), e)]


def test_search_parameters_select_entries() -> None:
    assert _hits([("patient", "Patient/p1")]) == [0]
    assert _hits([("entity", "Patient/p1")]) == [0, 4, 5]
    assert _hits([("entity", "Patient/p1/_history/3")]) == [5]
    assert _hits([("subtype", "read")]) == [0, 6]
    assert _hits([("type", "rest"), ("action", "C")]) == [1]
    assert _hits([("outcome", "4")]) == [6, 7]
    assert _hits([("agent", "dr-who"), ("outcome", "4,8")]) == [6, 7]
    assert _hits([("date", "2024-03-05")]) == list(range(len(ENTRIES)))
    assert _hits([("date", "lt2024-03-05")]) == []
    assert _hits([("date", "ge2024-03-05T10:11:12.346Z")]) == []
    assert _hits([("subtype", "history-type")]) == [3, 4]
    assert _hits([("subtype", "urn:phivault:audit-action|rotate-kek")]) == [9]
    assert _hits([("_id", "1,2"), ("type", "rest")]) == [1, 2]
    assert _hits([("type", "no-such-code")]) == []


@pytest.mark.parametrize(
    ("pairs", "error"),
    [
        ([("name", "x")], UnsupportedSearchParameter),
        ([("date", "yesterday")], InvalidSearchParameter),
        ([("entity", "Patient")], InvalidSearchParameter),
        ([("patient", "Observation/1")], InvalidSearchParameter),
        ([("_id", "abc")], InvalidSearchParameter),
        ([("outcome", "")], InvalidSearchParameter),
    ],
)
def test_bad_parameters_are_refused_not_ignored(
    pairs: list[tuple[str, str]], error: type[Exception]
) -> None:
    with pytest.raises(error):
        parse_search(pairs, lambda c: c)
