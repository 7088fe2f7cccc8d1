"""One page of `audit verify` on its own: the subtrees it hands on, and what it finds."""

from __future__ import annotations

from typing import Any

import pytest

from phivault.audit.entry import encode_fields, index_row_of
from phivault.audit.merkle import leaf_hash, new_nodes_for_append, perfect_subtrees
from phivault.audit.verify_page import StoredLevels, check_page


def _entry(n: int) -> dict[str, Any]:
    return {"v": 1, "time": f"2024-01-01T00:00:{n % 60:02d}.000Z", "action": "read",
            "outcome": "0", "actor": f"user-{n}", "type": "Patient", "id": f"p{n}",
            "version": 1, "data_sha256": f"{n:064x}"}  # fmt: skip


def _log(size: int) -> tuple[list[tuple[Any, ...]], dict[tuple[int, int], bytes]]:
    fields = [_entry(n) for n in range(size)]
    rows = [(n, encode_fields(f), *index_row_of(f)) for n, f in enumerate(fields)]
    nodes = new_nodes_for_append(0, [leaf_hash(r[1]) for r in rows], lambda keys: {})
    return rows, nodes


def _stored(nodes: dict[tuple[int, int], bytes], start: int, stop: int) -> StoredLevels:
    levels: StoredLevels = {}
    level = 0
    while (stop >> level) > (start >> level):
        lo, hi = start >> level, stop >> level
        levels[level] = [(i, nodes[(level, i)]) for i in range(lo, hi) if (level, i) in nodes]
        level += 1
    return levels


@pytest.mark.parametrize("page", [1, 4, 8])
@pytest.mark.parametrize("size", [1, 5, 8, 13])
def test_a_page_hands_on_the_subtrees_of_its_range(page: int, size: int) -> None:
    rows, nodes = _log(size)
    for start in range(0, size, page):
        stop = min(start + page, size)
        cuts = tuple(range(start + 1, stop + 1))
        result = check_page(start, stop, rows[start:stop], _stored(nodes, start, stop), cuts)
        assert not (result.entry_findings or result.bad_leaves or result.bad_nodes)
        assert result.gap is None
        assert result.edge == [nodes[k] for k in perfect_subtrees(start, stop)]
        for cut in cuts:
            assert result.cut_edges[cut] == [nodes[k] for k in perfect_subtrees(start, cut)]
        assert [f[0] for f in result.facts] == list(range(start, stop))


def test_a_page_names_a_bad_leaf_and_only_the_nodes_changed_on_their_own() -> None:
    rows, nodes = _log(8)
    nodes[(0, 2)] = b"\x01" * 32  # leaf 2: its parents differ too, and are not named
    nodes[(1, 3)] = b"\x02" * 32  # over leaves 6..7, which are intact
    result = check_page(0, 8, rows, _stored(nodes, 0, 8), ())
    assert result.bad_leaves == [(2, True)]
    assert result.bad_nodes == [(1, 3)]


def test_a_page_with_a_gap_recomputes_only_before_it() -> None:
    rows, nodes = _log(8)
    del rows[5]
    rows[5] = (6, b"{}", *rows[5][2:])  # past the gap: still checked entry by entry
    result = check_page(0, 8, rows, _stored(nodes, 0, 8), (4, 6))
    assert result.gap == 5
    assert result.edge == [nodes[(2, 0)], nodes[(0, 4)]]
    assert list(result.cut_edges) == [4]
    assert result.bad_leaves == [(6, True)]
    assert result.entry_findings == [(6, "entry 6 is not a well-formed audit entry")]


def test_an_edited_search_column_is_named() -> None:
    rows, nodes = _log(4)
    rows[3] = (*rows[3][:5], "someone-else", *rows[3][6:])
    result = check_page(0, 4, rows, _stored(nodes, 0, 4), ())
    assert result.entry_findings == [(3, "entry 3: its search index row does not match it")]
