"""Blind indexes: normalization, prefix search, domain separation."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phivault.crypto.blind import (
    DEFAULT_PREFIX_LEN,
    BlindKey,
    blind_exact,
    blind_prefix_query,
    blind_prefixes,
    blind_token,
    normalize_string,
)
from phivault.crypto.blind_index import BLIND, WHOLE_VALUES, BlindIndexPolicy
from phivault.detect.kinship import HELD
from phivault.types import IndexRow

KEY = b"\x01" * 32
OTHER_KEY = b"\x02" * 32


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("  José   MÜLLER ", "jose muller"),
        ("Ångström", "angstrom"),
        ("Straße", "strasse"),
        ("ÇELİK", "celik"),
        ("Zoë\tO\u2019Brien", "zoe o\u2019brien"),
        ("ﬁne", "fine"),
        ("Dvořák", "dvorak"),
        ("", ""),
    ],
)
def test_normalize_string(raw: str, want: str) -> None:
    assert normalize_string(raw) == want


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_normalize_ascii_shortcut_is_the_full_normalisation(s: str) -> None:
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", s).casefold())
    full = " ".join("".join(ch for ch in text if not unicodedata.combining(ch)).split())
    assert normalize_string(s) == full


@given(st.text())
def test_normalize_is_idempotent(s: str) -> None:
    n = normalize_string(s)
    assert normalize_string(n) == n


def _index(param: str, value: str) -> set[str]:
    return set(blind_prefixes(KEY, param, normalize_string(value)))


def test_prefix_search_matches_starts_with() -> None:
    smith, jones = _index("family", "Smith"), _index("family", "Jones")
    query = blind_prefix_query(KEY, "family", "smi")
    assert query.token in smith
    assert query.token not in jones
    assert not query.needs_recheck
    assert blind_prefix_query(KEY, "family", "SMÍTH").token in smith
    assert blind_prefix_query(KEY, "family", "mith").token not in smith  # not a substring search


def test_prefix_count_and_max_len() -> None:
    assert len(blind_prefixes(KEY, "family", "smith")) == 5
    long_name = "wolfeschlegelsteinhausenbergerdorff"
    tokens = blind_prefixes(KEY, "family", long_name)
    assert len(tokens) == DEFAULT_PREFIX_LEN
    assert len(blind_prefixes(KEY, "family", long_name, max_len=4)) == 4
    assert blind_prefixes(KEY, "family", "") == []
    query = blind_prefix_query(KEY, "family", long_name[:20])
    assert query.needs_recheck and query.token in tokens
    with pytest.raises(ValueError):
        blind_prefixes(KEY, "family", "x", max_len=0)
    with pytest.raises(ValueError):
        blind_prefix_query(KEY, "family", "   ")


def test_tokens_are_domain_separated() -> None:
    assert _index("family", "Paris").isdisjoint(_index("address-city", "Paris"))
    assert blind_token(KEY, "identifier", "urn:x", "1") != blind_token(KEY, "telecom", "urn:x", "1")
    # kinds do not collide either
    token, prefix = (
        blind_token(KEY, "family", None, "paris"),
        blind_prefixes(KEY, "family", "paris"),
    )
    assert token not in prefix
    # field boundaries cannot be shifted
    assert blind_token(KEY, "a", "b|c", "d") != blind_token(KEY, "a", "b", "c|d")
    assert blind_token(KEY, "ab", "c", "d") != blind_token(KEY, "a", "bc", "d")


def test_token_system_forms() -> None:
    any_system = blind_token(KEY, "identifier", None, "123")
    no_system = blind_token(KEY, "identifier", "", "123")
    with_system = blind_token(KEY, "identifier", "http://hospital/mrn", "123")
    assert len({any_system, no_system, with_system}) == 3
    assert blind_token(KEY, "identifier", None, "123") == any_system  # deterministic
    assert blind_token(KEY, "identifier", None, "ABC") != blind_token(
        KEY, "identifier", None, "abc"
    )


def test_tokens_depend_on_key_and_have_fixed_shape() -> None:
    token = blind_token(KEY, "identifier", None, "123")
    assert token != blind_token(OTHER_KEY, "identifier", None, "123")
    assert len(token) == 32 and int(token, 16) >= 0
    assert _index("family", "Smith").isdisjoint(set(blind_prefixes(OTHER_KEY, "family", "smith")))


@given(
    param=st.sampled_from(["family", "name", "address", "identifier"]),
    system=st.one_of(st.none(), st.text(max_size=20)),
    value=st.text(max_size=40),
    max_len=st.integers(min_value=1, max_value=20),
)
def test_blind_key_gives_the_same_tokens(
    param: str, system: str | None, value: str, max_len: int
) -> None:
    """The write path's pre-keyed tokens are the reference functions' tokens: indexes
    written either way match each other's queries."""
    fast = BlindKey(KEY)
    assert fast.token(param, system, value) == blind_token(KEY, param, system, value)
    normalized = normalize_string(value)
    assert fast.prefixes(param, normalized, max_len) == blind_prefixes(
        KEY, param, normalized, max_len
    )
    assert fast.token(param, system, value) != BlindKey(OTHER_KEY).token(param, system, value)


def test_policy_stores_each_prefix_token_once_in_token_order() -> None:
    policy = BlindIndexPolicy(KEY)
    rows = [
        IndexRow("name", "string", value="anderson", text="Anderson"),
        IndexRow("name", "string", value="ann", text="Ann"),
    ]
    out = policy.transform("Patient", rows)
    (row,) = [r for r in out if r.kind == BLIND and r.param == "name"]  # one per parameter
    name = (row.value or "").split(" ")
    # "anderson" (8) and "ann" (3) share "a" and "an": 9 distinct tokens, sorted, so the
    # order of rows says nothing about which token is which prefix.
    assert len(name) == len(set(name)) == 9 and name == sorted(name)
    assert set(name) == set(blind_prefixes(KEY, "name", "anderson")) | set(
        blind_prefixes(KEY, "name", "ann")
    )
    # `name` keeps no token of a whole value (search does not need one): one string row
    # for the parameter, holding no token (:missing)
    strings = [(r.param, r.value, r.text) for r in out if r.kind == "string"]
    assert strings == [("name", None, None)]
    assert all("nders" not in str(r.value) + str(r.text) for r in out)
    # a value that normalizes to nothing is not indexed at all
    assert policy.transform("Patient", [IndexRow("family", "string", value=" ", text=" ")]) == []


def test_a_value_of_a_narrower_parameter_is_stored_there_only() -> None:
    """`name` covers `family` and `given`: the family name's prefixes are stored under
    `family` alone, a name search looks them up there, and `phonetic` is `name`."""
    policy = BlindIndexPolicy(KEY)
    rows = [
        IndexRow("family", "string", value="anderson", text="Anderson"),
        IndexRow("name", "string", value="anderson", text="Anderson"),
        IndexRow("name", "string", value="dr", text="Dr"),
        IndexRow("phonetic", "string", value="anderson", text="Anderson"),
    ]
    out = policy.transform("Patient", rows)
    blind = {(r.param, t) for r in out if r.kind == BLIND for t in (r.value or "").split()}
    assert blind == {("family", t) for t in blind_prefixes(KEY, "family", "anderson")} | {
        ("name", t) for t in blind_prefixes(KEY, "name", "dr")
    }
    tokens, recheck = policy.query_prefix_tokens("name", "And")
    assert not recheck and len(tokens) == 3
    assert blind_prefix_query(KEY, "family", "and").token in tokens
    assert policy.query_prefix_tokens("phonetic", "And") == (tokens, False)
    assert policy.query_prefix_tokens("family", "And") == (
        (blind_prefix_query(KEY, "family", "and").token,),
        False,
    )
    # the family name keeps its whole-value row (the snooping detector's); name and
    # phonetic a tokenless row each (:missing)
    strings = [(r.param, r.value, r.text) for r in out if r.kind == "string"]
    whole = blind_prefixes(KEY, "family", "anderson")[-1], blind_exact(KEY, "family", "Anderson")
    assert strings == [("family", *whole), ("name", None, None), ("phonetic", None, None)]


def test_whole_values_keep_tokens_where_the_snooping_detector_reads_them() -> None:
    """Kinship (detect/kinship.py) matches staff and patients on the whole-value tokens
    of HELD; the policy keeps exactly those. An address part covered by a narrower
    parameter still gets its own longest-prefix token under `address`."""
    assert WHOLE_VALUES == frozenset(HELD)
    policy = BlindIndexPolicy(KEY)
    rows = [
        IndexRow("address", "string", value="plant city", text="Plant City"),
        IndexRow("address-city", "string", value="plant city", text="Plant City"),
        IndexRow("given", "string", value="ann", text="Ann"),
    ]
    strings = [(r.param, r.value, r.text) for r in policy.transform("Patient", rows)
               if r.kind == "string"]  # fmt: skip
    assert strings == [
        ("address", blind_prefixes(KEY, "address", "plant city")[-1],
         blind_exact(KEY, "address", "Plant City")),
        ("given", blind_prefixes(KEY, "given", "ann")[-1], blind_exact(KEY, "given", "Ann")),
        ("address-city", None, None),
    ]  # fmt: skip


def test_a_date_is_written_as_its_query_token_at_its_precision() -> None:
    """A birth date becomes the token `query_date` looks up, at the precision it was
    given: an index written by the write path matches the search side's tokens."""
    policy = BlindIndexPolicy(KEY)
    day, month = 631_152_000.0, 633_830_400.0  # 1990-01-01 and 1990-02-01 (UTC)
    rows = [
        IndexRow("birthdate", "date", lo=day, hi=day + 86_399.999),
        IndexRow("death-date", "date", lo=day, hi=month - 0.001),
    ]
    out = [(r.param, r.kind, r.system, r.value) for r in policy.transform("Patient", rows)]
    assert out == [
        ("birthdate", "token", "date", policy.query_date("birthdate", "1990-01-01")),
        ("death-date", "token", "date", policy.query_date("death-date", "1990-01")),
    ]
    assert out[0][3] != policy.query_date("birthdate", "1990-01")
