"""Property tests: the FHIR JSON parser and validator, the search-parameter parser, the
bundle-entry parser and the JSON Patch parser take any input and either accept it or
raise a phivault error (a clear 4xx); never an unexpected exception, never a hang."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phivault.errors import PhivaultError
from phivault.fhir import json as fhirjson
from phivault.fhir.bundle_entries import EntryError, bundle_kind, parse_entries
from phivault.fhir.patch import parse_patch
from phivault.fhir.search.query import parse_search
from phivault.fhir.search.registry import default_registry
from phivault.fhir.validation import validate_resource

BUDGET = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TYPES = ["Patient", "Observation", "Encounter", "Bundle", "Condition", "MedicationRequest"]

# Text that stresses parsers: SQL and path meta-characters, escapes, unicode edge cases.
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["' OR 1=1--", "%", "_", "\\", "\\,", "\\|", "\\$", "../..", "\x00", "\u202e", "\ufeff",
         "\U0001f600", "1e999999", "NaN", "-0", "9" * 40, "ge", "le2020", "a|b|c", "a$b",
         "http://x/Patient/1", "Patient/1/_history/2", "urn:uuid:x", "*", ":missing"]
    ),
)  # fmt: skip
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), NASTY_TEXT
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(NASTY_TEXT, inner, max_size=4)
    ),
    max_leaves=25,
)


def _only_phivault_errors(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except PhivaultError as exc:
        assert 400 <= exc.http_status < 500, type(exc).__name__
        assert exc.message
        return None


@BUDGET
@given(st.binary(max_size=300))
def test_json_parser_takes_any_bytes(raw: bytes) -> None:
    try:
        value = fhirjson.loads(raw)
    except ValueError:
        return
    if isinstance(value, dict):
        _only_phivault_errors(validate_resource, value)


@BUDGET
@given(st.sampled_from(TYPES), st.dictionaries(NASTY_TEXT, JSON, max_size=6))
def test_validator_refuses_cleanly(rtype: str, body: dict[str, Any]) -> None:
    resource = {"resourceType": rtype, **body}
    resource["resourceType"] = rtype
    checked = _only_phivault_errors(validate_resource, resource)
    if checked is not None:  # accepted: it survives the server's own JSON round trip
        assert fhirjson.loads(fhirjson.dumps(checked))["resourceType"] == rtype


PARAM_NAMES = st.one_of(
    st.sampled_from(
        ["_id", "name", "family", "birthdate", "gender", "identifier", "_count", "_sort",
         "_include", "_revinclude", "_elements", "_summary", "_total", "_lastUpdated",
         "code", "date", "value-quantity", "subject", "patient", "_has:Observation:patient:code",
         "general-practitioner:Practitioner.name", "name:exact", "code:text", "subject:missing",
         "_cursor", "_content", "_filter"]
    ),
    NASTY_TEXT,
)  # fmt: skip


@BUDGET
@given(
    st.sampled_from(TYPES),
    st.lists(st.tuples(PARAM_NAMES, NASTY_TEXT), max_size=8),
    st.booleans(),
)
def test_search_parser_refuses_cleanly(
    rtype: str, pairs: list[tuple[str, str]], strict: bool
) -> None:
    _only_phivault_errors(
        lambda: parse_search(rtype, pairs, strict=strict, registry=default_registry())
    )


ENTRY = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {
            "request": st.fixed_dictionaries(
                {"method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])},
                optional={"url": NASTY_TEXT, "ifMatch": JSON_LEAF, "ifNoneExist": JSON_LEAF},
            )
        },
        optional={"resource": JSON, "fullUrl": NASTY_TEXT},
    ),
)


@BUDGET
@given(st.sampled_from(["batch", "transaction", "history", 3, None]), st.lists(ENTRY, max_size=5))
def test_bundle_entries_refuse_cleanly(kind: Any, entries: list[Any]) -> None:
    bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
    try:
        _only_phivault_errors(bundle_kind, bundle)
        _only_phivault_errors(parse_entries, bundle, "http://testserver/fhir")
    except EntryError as exc:  # the processor answers it for that entry, with its index
        assert 400 <= exc.error.http_status < 500 and exc.error.message
        assert 0 <= exc.index < len(entries)


@BUDGET
@given(JSON)
def test_patch_parser_refuses_cleanly(document: Any) -> None:
    _only_phivault_errors(parse_patch, document)
