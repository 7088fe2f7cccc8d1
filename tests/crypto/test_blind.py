"""Blind indexes: normalization, prefix search, domain separation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phivault.crypto.blind import (
    DEFAULT_PREFIX_LEN,
    blind_exact,
    blind_prefix_query,
    blind_prefixes,
    blind_token,
    normalize_string,
)

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
    assert blind_exact(KEY, "family", "Paris") != blind_exact(KEY, "address-city", "Paris")
    # kinds do not collide either
    exact, prefix = blind_exact(KEY, "family", "paris"), blind_prefixes(KEY, "family", "paris")[-1]
    assert exact != prefix
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


def test_exact_is_case_and_accent_sensitive() -> None:
    assert blind_exact(KEY, "family", "José") != blind_exact(KEY, "family", "Jose")
    assert blind_exact(KEY, "family", "José") != blind_exact(KEY, "family", "josé")
    assert blind_exact(KEY, "family", "José") == blind_exact(KEY, "family", "José")


def test_tokens_depend_on_key_and_have_fixed_shape() -> None:
    token = blind_token(KEY, "identifier", None, "123")
    assert token != blind_token(OTHER_KEY, "identifier", None, "123")
    assert len(token) == 32 and int(token, 16) >= 0
    assert _index("family", "Smith").isdisjoint(set(blind_prefixes(OTHER_KEY, "family", "smith")))
