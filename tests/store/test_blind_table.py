"""The blind prefix tokens on both backends: on PostgreSQL one idx_blind row per token
(migration 012), on SQLite one idx_blind_docs row per resource indexed by the FTS5 table
blind_fts (migration 013). A Patient's tokens are distinct 16-byte keys, follow updates,
deletes and reindexing, and a store migrated from an older layout (prefix tokens in
idx_string; on SQLite also idx_blind; whole-value and :exact tokens in idx_string) keeps
searching without a reindex."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from phivault.crypto.blind import blind_prefixes
from phivault.crypto.blind_index import BLIND
from phivault.fhir.indexing import index_rows
from phivault.service import Context
from phivault.service.reindex import reindex
from phivault.store.sql import blind_bytes, index_params
from phivault.types import IndexRow
from phivault.vault import Vault
from tests.keys_support import raw_sql

CTX = Context(actor="test")
PERSON = {
    "resourceType": "Patient",
    "name": [{"family": "Anderson", "given": ["Ann"]}],
    "address": [{"line": ["12 Elm Road"], "city": "Springfield"}],
}


def sqlite(vault: Vault) -> bool:
    return bool(vault.store.backend == "sqlite")


def blind_rows(vault: Vault, rid: str) -> list[bytes]:
    if sqlite(vault):
        sql = "SELECT tokens FROM idx_blind_docs WHERE rtype = ? AND rid = ?"
        docs = raw_sql(vault, sql, ("Patient", rid))
        return [bytes.fromhex(t) for (tokens,) in docs for t in tokens.split()]
    rows = raw_sql(
        vault, "SELECT token FROM idx_blind WHERE rtype = ? AND rid = ?", ("Patient", rid)
    )
    return [bytes(r[0]) for r in rows]


def drop_blind_rows(vault: Vault, rid: str) -> None:
    table = "idx_blind_docs" if sqlite(vault) else "idx_blind"
    raw_sql(vault, f"DELETE FROM {table} WHERE rid = ?", (rid,))


def found(vault: Vault, query: str) -> list[str]:
    params = [tuple(p.split("=", 1)) for p in query.split("&")]
    result = vault.service.search(CTX, "Patient", params)  # type: ignore[arg-type]
    return sorted(e.rid for e in result.matches)


def test_prefix_tokens_are_distinct_16_byte_keys(vault: Vault) -> None:
    rid = vault.service.create(CTX, "Patient", dict(PERSON)).version.rid
    tokens = blind_rows(vault, rid)
    assert tokens and all(len(t) == 16 for t in tokens)
    assert len(set(tokens)) == len(tokens)

    # idx_string keeps one row per blinded value of the snooping detector's parameters
    # (family, given, address: tokens of the whole value), not one per prefix ("anderson"
    # alone would have given 8 rows for `family`), and one tokenless row per other
    # blinded parameter with a value (:missing).
    def strings(param: str) -> list[tuple[str | None, str | None]]:
        sql = "SELECT value, text FROM idx_string WHERE rtype = ? AND rid = ? AND param = ?"
        return [(v, t) for v, t in raw_sql(vault, sql, ("Patient", rid, param))]

    ((value, text),) = strings("family")
    assert value is not None and text is not None and len(value) == len(text) == 32
    assert strings("name") == strings("address-city") == [(None, None)]
    for query in ("family=and", "name=an", "name=ANN", "address=spring", "address-city=Springf"):
        assert found(vault, query) == [rid], query
    assert found(vault, "family=ann") == []
    assert found(vault, "family:exact=Anderson") == [rid]
    assert found(vault, "family:exact=anderson") == []
    assert found(vault, "family:missing=false") == [rid]


def test_stored_tokens_are_the_policys_in_token_order(vault: Vault) -> None:
    """What the store holds for a resource is exactly the policy's prefix tokens, in
    token order (PostgreSQL: one INSERT cutting one bytea; SQLite: one document)."""
    person = {**PERSON, "name": [{"family": "Ångström", "given": ["Zoë", "Ann"]}]}
    rid = vault.service.create(CTX, "Patient", dict(person)).version.rid
    rows = index_rows({**person, "id": rid})
    policy = vault.service.index_policy
    blind = [r.value or "" for r in policy.transform("Patient", rows) if r.kind == BLIND]
    expected = sorted(bytes.fromhex(token) for tokens in blind for token in tokens.split())
    stored = blind_rows(vault, rid)
    assert sorted(stored) == expected and len(expected) > 20
    if sqlite(vault):
        assert stored == expected  # the document lists them in token order
    for query in ("family=angs", "given=zo", "name=ANGSTROM", "given:exact=Zoë"):
        assert found(vault, query) == [rid], query


def test_a_resources_tokens_are_one_tuple_in_token_order() -> None:
    """index_params gives a resource's distinct tokens as one tuple (SQLite's document
    row); blind_bytes cuts it into PostgreSQL's rows, one 16-byte token each, in order."""
    a, b, c = "0f" * 16, "a0" * 16, "ff" * 16
    rows = [
        IndexRow("family", BLIND, value=f"{c} {a}"),
        IndexRow("given", BLIND, value=f"{b} {a}"),  # a shared token is stored once
        IndexRow("gender", "token", system="s", value="female"),
        IndexRow("uri-param", "uri", value="http://x"),
    ]
    grouped = index_params("Patient", "p1", rows)
    assert grouped[BLIND] == [(f"{a} {b} {c}", "Patient", "p1")]
    assert grouped["token"] == [("Patient", "gender", "p1", "s", "female", None)]
    assert grouped["uri"] == [("Patient", "uri-param", "p1", "http://x")]
    two = grouped[BLIND] + [(b, "Patient", "p2")]
    assert blind_bytes(two) == [
        (bytes.fromhex(a), "Patient", "p1"),
        (bytes.fromhex(b), "Patient", "p1"),
        (bytes.fromhex(c), "Patient", "p1"),
        (bytes.fromhex(b), "Patient", "p2"),
    ]


def test_a_token_that_is_not_hex_is_refused() -> None:
    for bad in ("ab" * 15 + "zz", "ab" * 15 + "\ta", "ab" * 8, "ab" * 15 + " " + "ab" * 17, ""):
        with pytest.raises(ValueError):
            index_params("Patient", "x", [IndexRow("family", BLIND, value=bad)])


def test_tokens_follow_update_and_delete(vault: Vault) -> None:
    rid = vault.service.create(CTX, "Patient", dict(PERSON)).version.rid
    before = set(blind_rows(vault, rid))
    moved = {**PERSON, "id": rid, "name": [{"family": "Brown", "given": ["Ann"]}]}
    vault.service.update(CTX, "Patient", rid, moved)
    after = set(blind_rows(vault, rid))
    assert after and after != before
    assert found(vault, "family=and") == []
    assert found(vault, "family=bro&given=an") == [rid]
    vault.service.delete(CTX, "Patient", rid)
    assert blind_rows(vault, rid) == []
    assert found(vault, "family=bro") == []


def test_a_longer_query_is_rechecked_after_decryption(vault: Vault) -> None:
    """Prefixes are indexed up to the policy's prefix length: a longer query matches a
    superset by its first characters, and the decrypted values decide (page and total)."""
    length = vault.service.index_policy.prefix_len  # type: ignore[attr-defined]
    stem = "x" * length
    ids = {}
    for tail in ("alpha", "beta", "alpine"):
        body = {**PERSON, "name": [{"family": stem + tail}]}
        ids[tail] = vault.service.create(CTX, "Patient", body).version.rid
    assert found(vault, f"family={stem}al") == sorted([ids["alpha"], ids["alpine"]])
    query = [("family", stem + "alp"), ("_count", "1"), ("_total", "accurate")]
    first = vault.service.search(CTX, "Patient", query)
    assert first.total == 2 and len(first.matches) == 1 and first.next_cursor
    seen, page = [first.matches[0].rid], first
    while page.next_cursor:  # a page may end early, at a candidate not yet examined
        page = vault.service.search(CTX, "Patient", [*query, ("_cursor", page.next_cursor)])
        assert len(page.matches) <= 1
        seen.extend(e.rid for e in page.matches)
    assert sorted(seen) == sorted([ids["alpha"], ids["alpine"]])
    assert found(vault, f"family={stem}b") == [ids["beta"]]


def test_reindex_rebuilds_the_blind_table(vault: Vault) -> None:
    rid = vault.service.create(CTX, "Patient", dict(PERSON)).version.rid
    tokens = set(blind_rows(vault, rid))
    drop_blind_rows(vault, rid)
    assert found(vault, "family=and") == []
    for _ in reindex(vault.service, CTX, "Patient"):
        pass
    assert set(blind_rows(vault, rid)) == tokens
    assert found(vault, "family=and") == [rid]


def _old_exact(raw: str) -> str:
    """A stand-in for the :exact token older stores kept (32 hex digits): nothing reads
    it any more; the migrations recognise it by its shape."""
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _to_old_layout(vault: Vault, rid: str) -> None:
    """What a store written before migration 012 held: every prefix token as a hex row
    of idx_string, a row per whole value carrying the token of its longest prefix and its
    :exact token, none in idx_blind, and `phonetic` blinded in its own domain."""
    key = vault.service.index_policy._key  # type: ignore[attr-defined]
    tokens = blind_rows(vault, rid)
    drop_blind_rows(vault, rid)
    rows = [("family", token.hex(), None) for token in tokens]
    raw_sql(
        vault, "DELETE FROM idx_string WHERE rid = ? AND param IN (?, ?)", (rid, "phonetic", "name")
    )
    for raw in ("Anderson", "Ann"):
        prefixes = blind_prefixes(key, "phonetic", raw)
        rows += [("phonetic", t, None) for t in prefixes[:-1]]
        rows.append(("phonetic", prefixes[-1], _old_exact(raw)))
        rows.append(("name", blind_prefixes(key, "name", raw)[-1], _old_exact(raw)))
    for param, value, text in rows:
        raw_sql(
            vault,
            "INSERT INTO idx_string (rtype, param, value, text, rid) VALUES (?, ?, ?, ?, ?)",
            ("Patient", param, value, text, rid),
        )


def _blinded_strings(vault: Vault, rid: str) -> list[tuple[str, str | None, str | None]]:
    return sorted(
        raw_sql(vault, "SELECT param, value, text FROM idx_string WHERE rid = ?", (rid,)),
        key=str,
    )


def test_migrations_move_old_prefix_rows_and_drop_whole_value_tokens(vault: Vault) -> None:
    rid = vault.service.create(CTX, "Patient", dict(PERSON)).version.rid
    tokens = set(blind_rows(vault, rid))
    _to_old_layout(vault, rid)
    if sqlite(vault):  # migration 013 runs again after 012, with the tokens 012 moved
        raw_sql(vault, "DROP TABLE blind_fts")
        raw_sql(vault, "DROP TABLE idx_blind_docs")
        raw_sql(vault, "DELETE FROM schema_migrations WHERE version IN (12, 13, 14)")
    else:
        raw_sql(vault, "DROP TABLE idx_blind")
        raw_sql(vault, "DELETE FROM schema_migrations WHERE version IN (12, 14)")
    store: Any = vault.store
    store.migrate()
    # every old prefix token moves (the whole-value rows' tokens too, which a value
    # covered by a narrower parameter no longer needs: harmless, gone at its next write)
    assert tokens <= set(blind_rows(vault, rid))
    # migration 014: the rows of the parameters search alone reads hold no token; the
    # snooping detector's (family, given, address) keep theirs
    strings = _blinded_strings(vault, rid)
    assert {p for p, _, _ in strings} == {
        "address",
        "address-city",
        "family",
        "given",
        "name",
        "phonetic",
    }
    for param, value, text in strings:
        kept = param in ("family", "given", "address")
        assert (value is not None and text is not None) == kept, param
    assert found(vault, "name=an") == [rid]
    assert found(vault, "family:exact=Anderson") == [rid]
    assert found(vault, "family:exact=anderson") == []
    assert found(vault, "phonetic=anders") == [rid]
    assert found(vault, "phonetic:exact=Ann") == [rid]
    assert found(vault, "phonetic:missing=true") == []
    assert found(vault, "name:missing=false") == [rid]


def test_migration_014_keeps_values_that_are_not_tokens(vault: Vault) -> None:
    """A store without encryption keeps its values in clear: 014 only touches rows whose
    value (and text, if any) have a token's shape."""
    rid = vault.service.create(CTX, "Patient", dict(PERSON)).version.rid
    clear = [("name", "anderson", "Anderson"), ("address-city", "0" * 32, "Not hex!")]
    for param, value, text in clear:
        raw_sql(
            vault,
            "INSERT INTO idx_string (rtype, param, value, text, rid) VALUES (?, ?, ?, ?, ?)",
            ("Patient", param, value, text, rid),
        )
    raw_sql(vault, "DELETE FROM schema_migrations WHERE version = ?", (14,))
    store: Any = vault.store
    store.migrate()
    strings = _blinded_strings(vault, rid)
    for row in clear:
        assert row in strings


def test_phonetic_shares_the_tokens_of_name(vault: Vault) -> None:
    """R4 indexes `phonetic` with `name`'s expression on every blinded type, which is
    what lets the policy store those tokens once."""
    registry = vault.service.searcher.registry
    for rtype in ("Patient", "Practitioner", "RelatedPerson", "Person"):
        params = registry.params_for(rtype)
        assert params["phonetic"].expression == params["name"].expression == f"{rtype}.name"
    rid = vault.service.create(CTX, "Patient", dict(PERSON)).version.rid
    names = {"name=ande", "phonetic=ande", "phonetic=Ann", "phonetic:exact=Anderson"}
    for query in sorted(names):
        assert found(vault, query) == [rid], query
    assert found(vault, "phonetic:exact=anderson") == []
    assert found(vault, "phonetic=spring") == []


def test_broader_parameters_find_what_narrower_ones_store(vault: Vault) -> None:
    """`name` and `address` keep prefix tokens only for the values no narrower parameter
    (family, given; city, state, postal code, country) holds, and their searches look up
    those parameters' tokens too: the same matches as before, and no more."""
    body = {
        **PERSON,
        "name": [{"family": "Anderson", "given": ["Ann"], "prefix": ["Dr"]}],
        "address": [{"line": ["12 Elm Road"], "city": "Springfield", "state": "OR"}],
    }
    rid = vault.service.create(CTX, "Patient", body).version.rid
    other = vault.service.create(CTX, "Patient", {**PERSON, "name": [{"family": "Drake"}]})
    for query in ("name=ande", "name=ann", "name=dr", "phonetic=dr", "address=12 e", "address=spr"):
        assert rid in found(vault, query), query
    assert found(vault, "name=dr") == sorted([rid, other.version.rid])
    assert found(vault, "address=or") == [rid]
    assert found(vault, "address-state=or") == [rid]
    assert found(vault, "family=dr") == [other.version.rid]  # a prefix is not a family name
    assert found(vault, "given=ande") == []
    assert found(vault, "address-city=12") == []
    assert found(vault, "name:exact=Ann") == [rid]


def test_exact_compares_the_decrypted_value_as_written(vault: Vault) -> None:
    """`:exact` has no token of its own: the value's prefix tokens select candidates
    (those sharing its first prefix_len normalised characters), and only a value equal
    to the text as written, case and accents included, is kept, longer values too."""
    long = "Ångström-Wellington"
    body = {**PERSON, "name": [{"family": long, "given": ["Zoë"]}]}
    rid = vault.service.create(CTX, "Patient", body).version.rid
    near = {**PERSON, "name": [{"family": long + "e", "given": ["Zoe"]}]}
    other = vault.service.create(CTX, "Patient", near).version.rid
    assert found(vault, f"family:exact={long}") == [rid]
    assert found(vault, f"family:exact={long}e") == [other]
    for miss in (long.lower(), "Angstrom-Wellington", long[:-1]):
        assert found(vault, f"family:exact={miss}") == [], miss
    assert found(vault, "given:exact=Zoë") == [rid]
    assert found(vault, "name:exact=Zoe") == [other]
    assert found(vault, f"family={long[:-1]}") == sorted([rid, other])


def test_rechecks_of_several_parameters_each_compare_their_own_values(vault: Vault) -> None:
    """A search re-checking two parameters (`:exact` of one, a starts-with longer than
    the indexed prefixes of another) keeps a candidate only when each parameter's own
    decrypted values pass: the re-check reads exactly those parameters' values."""
    street = "1234 Longfellow Avenue"
    body = {
        **PERSON,
        "name": [{"family": "Quill", "given": ["Ada"]}],
        "address": [{"line": [street], "city": "Portland"}],
    }
    rid = vault.service.create(CTX, "Patient", body).version.rid
    twin = {**body, "name": [{"family": "quill", "given": ["Ada"]}]}
    other = vault.service.create(CTX, "Patient", twin).version.rid
    assert found(vault, f"family:exact=Quill&address={street}") == [rid]
    assert found(vault, f"family:exact=quill&address={street}") == [other]
    assert found(vault, f"family=quill&address={street}") == sorted([rid, other])
    assert found(vault, f"family:exact=Quill&address={street[:-1]}x") == []
    assert found(vault, "family:exact=Quill&given:exact=ada") == []
