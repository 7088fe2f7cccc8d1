"""The search parser: typed values, modifiers, prefixes, escaping, limits (no storage)."""

from __future__ import annotations

import pytest

from phivault.errors import BadRequest, InvalidSearchParameter, UnsupportedSearchParameter
from phivault.fhir.conditions import parse_condition
from phivault.fhir.search.index import date_range
from phivault.fhir.search.model import (
    ChainClause,
    Clause,
    CompositeValue,
    DateValue,
    HasClause,
    Include,
    MissingValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
)
from phivault.fhir.search.params import split_escaped, unescape
from phivault.fhir.search.query import MAX_PARAMS, MAX_VALUE_LENGTH, parse_search


def one(rtype: str, name: str, value: str) -> Clause:
    request = parse_search(rtype, [(name, value)])
    assert len(request.filters) == 1
    found = request.filters[0]
    assert isinstance(found, Clause)
    return found


# -- escaping ---------------------------------------------------------------------------------


def test_escaped_separators_do_not_split() -> None:
    assert split_escaped(r"a\,b,c", ",") == [r"a\,b", "c"]
    assert unescape(r"a\,b\|c\$d\\e") == r"a,b|c$d\e"
    clause = one("Patient", "family", r"O\,Brien,Smith")
    assert clause.values == (StringValue("O,Brien"), StringValue("Smith"))


def test_or_by_comma_and_by_repetition() -> None:
    request = parse_search("Observation", [("status", "final,amended"), ("status", "final")])
    first, second = request.filters
    assert isinstance(first, Clause) and isinstance(second, Clause)
    assert first.values == (TokenValue(None, "final"), TokenValue(None, "amended"))
    assert second.values == (TokenValue(None, "final"),)


# -- token ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc", TokenValue(None, "abc")),
        ("http://s|abc", TokenValue("http://s", "abc")),
        ("|abc", TokenValue("", "abc")),
        ("http://s|", TokenValue("http://s", None)),
        (r"http://s|a\|b", TokenValue("http://s", "a|b")),
    ],
)
def test_token_forms(raw: str, expected: TokenValue) -> None:
    assert one("Observation", "code", raw).values == (expected,)


def test_token_modifiers() -> None:
    assert one("Observation", "code:not", "x").modifier == "not"
    text = one("Observation", "code:text", "Body height")
    assert text.values == (StringValue("Body height"),)
    assert one("Observation", "code:missing", "true").values == (MissingValue(True),)
    assert one("Observation", "code:in", "http://vs").values == (UriValue("http://vs"),)
    assert one("Observation", "code:not-in", "ValueSet/v1").values == (UriValue("ValueSet/v1"),)
    of_type = one("Patient", "identifier:of-type", "http://t|MR|123")
    assert of_type.values == (TokenValue("http://t|MR", "123"),)
    for name, raw in [
        ("code:in", "not-a-url"),
        ("code:in", "ValueSet/"),
        ("identifier:of-type", "http://t|MR"),
        ("identifier:of-type", "http://t||123"),
    ]:
        with pytest.raises(InvalidSearchParameter):
            one("Patient" if "identifier" in name else "Observation", name, raw)
    with pytest.raises(UnsupportedSearchParameter):
        one("Observation", "code:below", "x")
    with pytest.raises(InvalidSearchParameter):
        one("Observation", "code", "|")
    with pytest.raises(InvalidSearchParameter):
        one("Observation", "code:missing", "maybe")


def test_id_is_checked() -> None:
    assert one("Patient", "_id", "a-1,b.2").values == (
        TokenValue(None, "a-1"),
        TokenValue(None, "b.2"),
    )
    with pytest.raises(InvalidSearchParameter):
        one("Patient", "_id", "no/slashes")


# -- string, uri ------------------------------------------------------------------------------


def test_string_modifiers() -> None:
    assert one("Patient", "family:exact", "Smith").modifier == "exact"
    assert one("Patient", "family:contains", "mit").modifier == "contains"
    with pytest.raises(UnsupportedSearchParameter):
        one("Patient", "family:text", "x")
    with pytest.raises(InvalidSearchParameter):
        one("Patient", "family", "   ")


def test_uri_modifiers() -> None:
    clause = one("ValueSet", "url:below", "http://x.org/fhir")
    assert clause.values == (UriValue("http://x.org/fhir"),)
    assert one("ValueSet", "url:above", "http://x.org/fhir/a").modifier == "above"


# -- dates, numbers, quantities ---------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
def test_every_prefix_on_a_date(prefix: str) -> None:
    (value,) = one("Observation", "date", f"{prefix}2021-03").values
    assert isinstance(value, DateValue)
    assert value.prefix == prefix
    assert (value.lo, value.hi) == date_range("2021-03")


def test_date_without_prefix_is_eq_and_precision_sets_the_range() -> None:
    (value,) = one("Observation", "date", "2021").values
    assert isinstance(value, DateValue)
    assert value.prefix == "eq"
    assert value.hi - value.lo == 365 * 86400
    (minute,) = one("Observation", "date", "2021-03-01T10:00Z").values
    assert isinstance(minute, DateValue)
    assert minute.hi - minute.lo == 60


def test_a_plus_sign_lost_in_url_decoding_is_restored() -> None:
    (value,) = one("Observation", "date", "ge2021-03-01T10:00:00 01:00").values
    assert isinstance(value, DateValue)
    assert value.lo == date_range("2021-03-01T09:00:00Z")[0]  # type: ignore[index]


@pytest.mark.parametrize(
    "raw", ["2021-13", "xx2021", "2021-02-30", "ge", "20210301", "2021-03-01T25:00"]
)
def test_malformed_dates_are_refused(raw: str) -> None:
    with pytest.raises(InvalidSearchParameter) as caught:
        one("Observation", "date", raw)
    assert raw not in caught.value.message  # names the parameter, never the value


def test_numbers_keep_their_precision() -> None:
    (value,) = one("RiskAssessment", "probability", "gt0.25").values
    assert value == NumberValue("gt", 0.25, 0.245, 0.255)
    (whole,) = one("RiskAssessment", "probability", "100").values
    assert isinstance(whole, NumberValue)
    assert (whole.lo, whole.hi) == (99.5, 100.5)
    for bad in ("abc", "1..2", "NaN", "Infinity", "xx1"):
        with pytest.raises(InvalidSearchParameter):
            one("RiskAssessment", "probability", bad)


def test_quantity_forms() -> None:
    (full,) = one("Observation", "value-quantity", "le5.4|http://unitsofmeasure.org|mg").values
    assert isinstance(full, QuantityValue)
    assert (full.number.prefix, full.system, full.code) == ("le", "http://unitsofmeasure.org", "mg")
    (code_only,) = one("Observation", "value-quantity", "5.4||mg").values
    assert isinstance(code_only, QuantityValue)
    assert (code_only.system, code_only.code) == (None, "mg")
    with pytest.raises(InvalidSearchParameter):
        one("Observation", "value-quantity", "5.4|mg")


# -- references -------------------------------------------------------------------------------


def test_reference_forms() -> None:
    assert one("Observation", "subject", "Patient/123").values == (
        ReferenceValue("Patient", "123"),
    )
    assert one("Observation", "subject", "123").values == (ReferenceValue(None, "123"),)
    typed = one("Observation", "subject:Patient", "123")
    assert typed.values == (ReferenceValue("Patient", "123"),)
    # A parameter with a single target type knows it.
    assert one("Observation", "patient", "123").values == (ReferenceValue("Patient", "123"),)
    url = "http://example.org/fhir/Patient/123/_history/2"
    assert one("Observation", "subject", url).values == (ReferenceValue("Patient", "123", url),)
    ident = one("Observation", "subject:identifier", "urn:mrn|42")
    assert ident.values == (TokenValue("urn:mrn", "42"),)
    with pytest.raises(InvalidSearchParameter):
        one("Observation", "subject", "Nonsense/1")
    with pytest.raises(InvalidSearchParameter):
        one("Observation", "subject:Patient", "Group/1")
    with pytest.raises(InvalidSearchParameter):
        one("Observation", "subject:Medication", "1")  # not a target of subject


# -- composite --------------------------------------------------------------------------------


def test_composite_parts_take_their_component_types() -> None:
    raw = r"http://loinc.org|8302-2$gt170|http://unitsofmeasure.org|cm"
    (value,) = one("Observation", "code-value-quantity", raw).values
    assert isinstance(value, CompositeValue)
    assert value.kinds == ("token", "quantity")
    token, quantity = value.parts
    assert token == TokenValue("http://loinc.org", "8302-2")
    assert isinstance(quantity, QuantityValue) and quantity.number.prefix == "gt"
    with pytest.raises(InvalidSearchParameter):
        one("Observation", "code-value-quantity", "8302-2")


# -- chains and _has --------------------------------------------------------------------------


def test_chains() -> None:
    (typed,) = parse_search("Observation", [("subject:Patient.name", "smith")]).filters
    assert isinstance(typed, ChainClause)
    assert (typed.code, typed.target, typed.inner.code) == ("subject", "Patient", "name")
    # subject.family is unambiguous: of subject's targets only Patient has "family".
    (implicit,) = parse_search("Observation", [("subject.family", "smith")]).filters
    assert isinstance(implicit, ChainClause) and implicit.target == "Patient"
    with pytest.raises(InvalidSearchParameter):  # Patient and Location both have "name"
        parse_search("Observation", [("subject.name", "x")])
    with pytest.raises(UnsupportedSearchParameter):
        parse_search("Observation", [("subject:Patient.organization.name", "x")])
    with pytest.raises(InvalidSearchParameter):
        parse_search("Observation", [("status.name", "x")])


def test_has() -> None:
    (found,) = parse_search("Patient", [("_has:Observation:patient:code", "1234-5")]).filters
    assert isinstance(found, HasClause)
    assert (found.source, found.ref_param, found.inner.code) == ("Observation", "patient", "code")
    for name in (
        "_has:Observation:patient",
        "_has:Nope:patient:code",
        "_has:Observation:code:code",
    ):
        with pytest.raises(BadRequest):
            parse_search("Patient", [(name, "x")])
    with pytest.raises(UnsupportedSearchParameter):
        parse_search("Patient", [("_has:Observation:patient:_has:Observation:x:y", "z")])


# -- result parameters ------------------------------------------------------------------------


def test_result_parameters() -> None:
    request = parse_search(
        "Observation",
        [
            ("_sort", "code,-date"),
            ("_count", "5000"),
            ("_summary", "count"),
            ("_elements", "status,Observation.code,subject.reference"),
            ("_total", "accurate"),
            ("_include", "Observation:subject"),
            ("_include:iterate", "Patient:organization:Organization"),
            ("_revinclude", "Provenance:target"),
        ],
        max_count=100,
    )
    assert request.sort == (SortKey("code", "token"), SortKey("date", "date", descending=True))
    assert request.count == 100  # capped
    assert request.summary == "count" and request.total == "accurate"
    assert request.elements == ("status", "code", "subject.reference")
    assert request.includes == (
        Include("Observation", "subject"),
        Include("Patient", "organization", "Organization", iterate=True),
    )
    assert request.revincludes == (Include("Provenance", "target"),)
    for name, value in [
        ("_count", "-1"),
        ("_count", "x"),
        ("_summary", "maybe"),
        ("_total", "all"),
        ("_elements", "1x"),
        ("_elements", "name.1x"),
        ("_elements", "a.b.c.d.e.f.g"),
        ("_include", "Observation"),
        ("_include:deep", "Observation:subject"),
    ]:
        with pytest.raises(BadRequest):
            parse_search("Observation", [(name, value)])


def test_wildcard_include() -> None:
    request = parse_search("Observation", [("_include", "*")])
    assert request.includes == (Include("Observation", None),)


# -- lenient and strict -----------------------------------------------------------------------


def test_lenient_ignores_and_reports_unknown_parameters() -> None:
    request = parse_search(
        "Patient", [("foo", "1"), ("_sort", "nope,family"), ("_text", "x"), ("gender", "")]
    )
    names = [i.name for i in request.ignored]
    assert names == ["foo", "nope", "_text", "gender"]
    assert request.sort == (SortKey("family", "string"),)
    assert ("foo", "1") not in request.used and ("_sort", "family") in request.used


@pytest.mark.parametrize(
    "pair", [("foo", "1"), ("_sort", "nope"), ("_text", "x"), ("gender", ""), ("_include", "X:y")]
)
def test_strict_refuses_what_lenient_ignores(pair: tuple[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_search("Patient", [pair], strict=True)


def test_unknown_modifier_is_refused_even_when_lenient() -> None:
    with pytest.raises(UnsupportedSearchParameter):
        parse_search("Patient", [("family:fuzzy", "x")])


# -- bounds -----------------------------------------------------------------------------------


def test_bounds() -> None:
    with pytest.raises(InvalidSearchParameter):
        parse_search("Patient", [("gender", "male")] * (MAX_PARAMS + 1))
    with pytest.raises(InvalidSearchParameter):
        parse_search("Patient", [("family", "x" * (MAX_VALUE_LENGTH + 1))])
    with pytest.raises(InvalidSearchParameter):
        parse_search("Patient", [("gender", ",".join(["male"] * 101))])
    with pytest.raises(InvalidSearchParameter):
        parse_search("Patient", [("gender", "male,,female")])
    with pytest.raises(InvalidSearchParameter):
        parse_search("Patient", [("x" * 200, "1")])


def test_errors_never_echo_values() -> None:
    secret = "Zzyzxsecret"
    for pair in [("birthdate", f"ge{secret}"), ("_id", f"{secret}/1"), ("subject", f"{secret}/1")]:
        try:
            parse_search("Observation" if pair[0] == "subject" else "Patient", [pair])
        except BadRequest as exc:
            assert secret not in exc.message
        else:
            raise AssertionError("refused value accepted")


# -- conditions (conditional create/update/patch) ---------------------------------------------


def test_conditions_are_strict_searches_without_result_parameters() -> None:
    condition = parse_condition("Patient", "Patient?identifier=urn:mrn|1&family=smith")
    assert [getattr(f, "code", None) for f in condition.request.filters] == ["identifier", "family"]
    for query in (
        "foo=1",
        "identifier=1&_count=1",
        "_sort=family",
        "",
        "identifier=",
        "Group?name=x",
    ):
        with pytest.raises(BadRequest):
            parse_condition("Patient", query)


def test_all_values_together_are_bounded() -> None:
    many = ",".join(["final"] * 100)
    with pytest.raises(InvalidSearchParameter):
        parse_search("Observation", [("status", many)] * 11)
