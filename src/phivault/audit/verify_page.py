"""One page of `audit verify`: everything about a power-of-two aligned range of entries
that needs no other page.

A page ``[start, stop)`` starts at a multiple of its size (a power of two), so every
Merkle node below the page's own level lies inside exactly one page, and pages can be
checked independently (in worker processes, audit/verify.py) and merged in order:

- each entry is well formed and its search columns are the ones derived from it;
- each present entry's leaf hash equals the stored leaf (level 0);
- over the entries before the page's first missing one (all of them, usually), every
  node they complete is recomputed and compared with the stored one;
- what entries say about data versions is extracted as `Fact`s, in order, for the
  caller's sequential pass (a version's hash may be written in one page, read in another).

Imports stay light: a worker process loads this module and the store's scan connection
only. Findings carry indexes and node keys, never an entry's content.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from phivault.audit.entry import ENTRY_FORMAT, REKEY, WRITE_ACTIONS

_READS = frozenset({"read", "vread"})
_SEEN = WRITE_ACTIONS | _READS | {REKEY}
_LEAF = b"\x00"
_NODE = b"\x01"

Fact = tuple[int, str, str, str, int, str | None, str | None]
"""(entry index, action, type, id, version, data_sha256, extra.from) of a successful
write, read or rekey entry that names a version."""

StoredLevels = dict[int, list[tuple[int, bytes]]]


class PageSource(Protocol):
    """The reads a page needs (a Store has them; so has a worker's scan connection)."""

    def audit_rows(self, start: int, stop: int) -> list[tuple[Any, ...]]: ...

    def audit_nodes_range(self, level: int, start: int, stop: int) -> list[tuple[int, bytes]]: ...


@dataclass(slots=True)
class PageResult:
    start: int
    stop: int
    entry_findings: list[tuple[int, str]] = field(default_factory=list)
    bad_leaves: list[tuple[int, bool]] = field(default_factory=list)  # (index, stored at all)
    bad_nodes: list[tuple[int, int]] = field(default_factory=list)  # (level, index), level >= 1
    gap: int | None = None  # the first missing entry of the page
    edge: list[bytes] = field(default_factory=list)  # perfect subtrees of [start, gap or stop)
    cut_edges: dict[int, list[bytes]] = field(default_factory=dict)  # same for [start, cut)
    leaves_checked: int = 0
    nodes_checked: int = 0  # above the leaves
    facts: list[Fact] = field(default_factory=list)


def read_page(source: PageSource, start: int, stop: int) -> tuple[list[Any], StoredLevels]:
    """The entries of ``[start, stop)`` and, per level, the stored nodes inside it."""
    levels: StoredLevels = {}
    level = 0
    while (stop >> level) > (start >> level):
        levels[level] = source.audit_nodes_range(level, start >> level, stop >> level)
        level += 1
    return source.audit_rows(start, stop), levels


def check_page(
    start: int, stop: int, rows: list[Any], stored: StoredLevels, cuts: Sequence[int]
) -> PageResult:
    """Check one page (see the module docstring). `cuts`: checkpoint sizes inside
    ``(start, stop]`` whose left part of this page's subtree the caller needs."""
    result = PageResult(start, stop)
    entries = _check_entries(result, rows)
    present = [row[0] for row in rows]
    hashes = [hashlib.sha256(_LEAF + raw).digest() for raw in entries]
    _check_leaves(result, present, hashes, stored.get(0, []))
    # The gap-free prefix: with rows in index order, row k is entry start + k until the
    # first missing one.
    run = len(present)
    if run and present[-1] != start + run - 1:
        run = next(k for k, idx in enumerate(present) if idx != start + k)
    if start + run != stop:
        result.gap = start + run
    _recompute(result, hashes[:run], stored, cuts)
    return result


def _check_entries(result: PageResult, rows: list[Any]) -> list[bytes]:
    """Each entry well formed, its index row derived from it, its facts noted; the hot
    loop of `verify`, kept to plain tuple work (what entry.index_row_of computes)."""
    loads = orjson.loads
    findings, facts = result.entry_findings, result.facts
    raws: list[bytes] = []
    for row in rows:
        idx, raw = row[0], row[1]
        raws.append(raw)
        try:
            entry = loads(raw)
            derived = (
                entry["time"],
                entry["action"],
                entry["outcome"],
                entry["actor"],
                entry.get("type"),
                entry.get("id"),
                entry.get("patient"),
            )
            well_formed = (
                entry["v"] == ENTRY_FORMAT
                and type(derived[0]) is str
                and type(derived[1]) is str
                and type(derived[2]) is str
                and type(derived[3]) is str
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            well_formed = False
        if not well_formed:
            findings.append((idx, f"entry {idx} is not a well-formed audit entry"))
            continue
        if derived != row[2:]:
            findings.append((idx, f"entry {idx}: its search index row does not match it"))
        version = entry.get("version")
        if (
            type(version) is int
            and derived[2] == "0"
            and derived[1] in _SEEN
            and type(derived[4]) is str
            and type(derived[5]) is str
        ):
            digest = entry.get("data_sha256")
            if type(digest) is not str:
                digest = None
            before = None
            if derived[1] == REKEY:
                extra = entry.get("extra")
                before = extra.get("from") if isinstance(extra, dict) else None
                if type(before) is not str:
                    before = None
            elif digest is None and derived[1] in _READS:
                continue  # a read without a hash says nothing about the data
            facts.append((idx, derived[1], derived[4], derived[5], version, digest, before))
    return raws


def _check_leaves(
    result: PageResult, present: list[int], hashes: list[bytes], stored: list[tuple[int, bytes]]
) -> None:
    result.leaves_checked = len(present)
    if len(stored) == len(hashes) and [h for _, h in stored] == hashes:
        if [i for i, _ in stored] == present:
            return  # the common case, compared at C speed
    found = dict(stored)
    for idx, value in zip(present, hashes, strict=True):
        if found.get(idx) != value:
            result.bad_leaves.append((idx, idx in found))


def _recompute(
    result: PageResult, hashes: list[bytes], stored: StoredLevels, cuts: Sequence[int]
) -> None:
    """Every node the gap-free prefix completes, level by level from the leaves, each
    level compared with the stored one at once; and the subtrees left of each cut."""
    start, end = result.start, result.start + len(hashes)
    levels: list[list[bytes]] = [hashes]
    sha256 = hashlib.sha256
    bad = [idx for idx, _ in result.bad_leaves]
    row, level = hashes, 0
    while len(row) > 1:
        row = [sha256(_NODE + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
        level += 1
        levels.append(row)
        _compare(result, level, start >> level, row, stored.get(level, []), bad)
    result.edge = _subtrees(levels, start, end)
    for cut in cuts:
        if start < cut <= end:
            result.cut_edges[cut] = _subtrees(levels, start, cut)


def _subtrees(levels: list[list[bytes]], start: int, end: int) -> list[bytes]:
    """Hashes of the perfect subtrees of ``[start, end)`` (merkle.perfect_subtrees order;
    `start` is aligned to the page, so they shrink from left to right)."""
    out: list[bytes] = []
    at = start
    for level in range(len(levels) - 1, -1, -1):
        if end - at >= 1 << level:
            out.append(levels[level][(at - start) >> level])
            at += 1 << level
    return out


def _compare(
    result: PageResult,
    level: int,
    first: int,
    computed: list[bytes],
    stored: list[tuple[int, bytes]],
    bad_leaves: list[int],
) -> None:
    result.nodes_checked += len(computed)
    if len(stored) == len(computed) and [h for _, h in stored] == computed:
        if stored[0][0] == first and stored[-1][0] == first + len(computed) - 1:
            return
    found = dict(stored)
    for offset, value in enumerate(computed):
        idx = first + offset
        if found.get(idx) == value:
            continue
        # A node above a bad leaf differs too; only nodes changed on their own count.
        lo = idx << level
        pos = bisect.bisect_left(bad_leaves, lo)
        if pos < len(bad_leaves) and bad_leaves[pos] < lo + (1 << level):
            continue
        result.bad_nodes.append((level, idx))


# -- in a worker process ----------------------------------------------------------------------

_worker_source: PageSource | None = None


def worker_open(source: Any) -> None:
    """Process pool initializer: the worker's own read connection (an AuditScanSource)."""
    global _worker_source
    _worker_source = source.open()


def worker_check(start: int, stop: int, cuts: tuple[int, ...]) -> PageResult:
    if _worker_source is None:
        raise RuntimeError("the worker has no connection")
    rows, stored = read_page(_worker_source, start, stop)
    return check_page(start, stop, rows, stored, cuts)
