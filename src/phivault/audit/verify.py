"""`phivault audit verify`: recompute the tree from every entry and compare everything.

What is checked, streaming over the log in pages (memory stays O(log n) for the tree):

1. every entry is present (no gap in the indexes) and well formed;
2. every stored Merkle node equals the node recomputed from the entries, and no node
   exists beyond the last entry (a truncated log leaves its nodes behind);
3. every checkpoint is signed by the log's key, and its root equals the recomputed root
   at its size (this catches a history rewritten together with its nodes);
4. every entry's search columns (AuditEvent search) are the ones derived from it;
5. every data version in the store still hashes to what its write entry recorded (or its
   latest `rekey` entry, after a data-key rotation re-encrypted it), every
   version has a write entry, every write entry's version still exists, and each current
   pointer is the latest audited version (an edited, inserted, deleted or rolled-back
   data row is caught);
6. with the key: the log's seal (audit/seal.py) covers exactly this log, so entries
   appended after the newest checkpoint by someone with database access are named.

Findings name entry indexes, node keys and type/id/version only: never an entry's content.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from phivault.audit.checkpoint import Checkpoint, verify_checkpoint
from phivault.audit.entry import ENTRY_FORMAT, REKEY, WRITE_ACTIONS, decode_entry
from phivault.audit.merkle import NodeKey, fold, leaf_hash, perfect_subtrees
from phivault.audit.seal import LogSeal, seal_findings
from phivault.errors import CheckpointError
from phivault.store.base import HistoryQuery, Store

PAGE = 50_000
MAX_KEPT = 10_000  # findings kept in full; all are counted
_READS = frozenset({"read", "vread"})
_BEYOND = 1 << 62  # an index no tree reaches

VersionKey = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Finding:
    index: int | None  # the first entry concerned; None when no entry is (a stray data row)
    message: str
    data: bool = False  # about data rows (judged by entries, so only as good as the log)


@dataclass(slots=True)
class VerifyReport:
    size: int = 0
    root: bytes = b""
    checkpoints: int = 0
    latest_checkpoint: int = 0  # size covered by the newest valid checkpoint
    sealed: bool = False  # whether the seal was checked (it needs the key)
    nodes_checked: int = 0
    versions_checked: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)  # the first MAX_KEPT
    total_findings: int = 0
    firsts: dict[bool, int] = field(default_factory=dict)  # data? -> lowest entry index

    @property
    def ok(self) -> bool:
        return self.total_findings == 0

    @property
    def first_bad_entry(self) -> int | None:
        """The log's own first bad entry; failing that, the first entry whose data no
        longer matches. (A tampered log can make intact data rows look wrong.)"""
        return self.firsts.get(False, self.firsts.get(True))

    def add(self, index: int | None, message: str, *, data: bool = False) -> None:
        self.total_findings += 1
        if index is not None and index < self.firsts.get(data, index + 1):
            self.firsts[data] = index
        if len(self.findings) < MAX_KEPT:  # a wholesale rewrite must not exhaust memory
            self.findings.append(Finding(index, message, data))


@dataclass(slots=True)
class _Writes:
    """What the write entries say about data versions (kept until the data pass)."""

    hashes: dict[VersionKey, tuple[int, str | None]] = field(default_factory=dict)
    latest: dict[tuple[str, str], tuple[int, int, str]] = field(default_factory=dict)
    former: dict[VersionKey, set[str]] = field(default_factory=dict)  # before re-encryption

    def see(self, report: VerifyReport, index: int, entry: dict[str, Any]) -> None:
        action = entry["action"]
        if entry["outcome"] != "0" or not (
            action in WRITE_ACTIONS or action in _READS or action == REKEY
        ):
            return
        rtype, rid, version = entry.get("type"), entry.get("id"), entry["version"]
        if type(rtype) is not str or type(rid) is not str or type(version) is not int:
            return
        key = (rtype, rid, version)
        digest = entry.get("data_sha256")
        if type(digest) is not str:
            digest = None
        if action == REKEY:
            self._rekeyed(report, index, key, digest, entry.get("extra"))
        elif action in WRITE_ACTIONS:
            known = self.hashes.get(key)
            if known is None:
                self.hashes[key] = (index, digest)
            elif known[1] != digest:
                report.add(index, f"entry {index} records another hash for an audited version")
            if version >= self.latest.get((rtype, rid), (0, 0, ""))[0]:
                self.latest[(rtype, rid)] = (version, index, action)
        elif digest is not None:
            known = self.hashes.get(key)
            if known is not None and known[1] != digest and digest not in self.former.get(key, ()):
                report.add(
                    index, f"entry {index} read data that differs from what was written", data=True
                )

    def _rekeyed(
        self, report: VerifyReport, index: int, key: VersionKey, digest: str | None, extra: Any
    ) -> None:
        """A re-encryption: the version's hash moves on, from exactly the one recorded."""
        known = self.hashes.get(key)
        before = extra.get("from") if isinstance(extra, dict) else None
        if known is None or digest is None or not isinstance(before, str) or known[1] != before:
            report.add(index, f"entry {index} re-encrypts a version it does not match")
            return
        self.former.setdefault(key, set()).add(before)
        self.hashes[key] = (index, digest)


class _Tree:
    """The recomputed tree: its right edge and a check of each stored node."""

    def __init__(self, store: Store, report: VerifyReport) -> None:
        self.store = store
        self.report = report
        self.size = 0
        self.edge: dict[NodeKey, bytes] = {}
        self.broken_at: int | None = None  # first missing entry: positions after it are lost
        self.bad_leaves: list[int] = []  # ascending
        # The stored nodes of the current page, per level: (first index, rows), read ahead.
        self.prefetched: dict[int, tuple[int, list[tuple[int, bytes]]]] = {}

    def root(self) -> bytes:
        keys = perfect_subtrees(0, self.size)
        return fold([self.edge[k] for k in keys]) if keys else hashlib.sha256(b"").digest()

    def extend(self, entries: list[bytes]) -> None:
        """Recompute, level by level, every node these entries complete (as
        merkle.new_nodes_for_append does) and compare each level with one range read."""
        edge = self.edge
        first, end = self.size, self.size + len(entries)
        row = [leaf_hash(e) for e in entries]
        rows: dict[int, tuple[int, list[bytes]]] = {}
        sha256, prefix = hashlib.sha256, b"\x01"
        level = 0
        while first < end:
            rows[level] = (first, row)
            self._compare(level, first, row)
            if first & 1:
                row = [edge[(level, first - 1)], *row]
                first -= 1
            row = [sha256(prefix + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
            level, first, end = level + 1, first >> 1, end >> 1
        self.size += len(entries)
        new_edge: dict[NodeKey, bytes] = {}
        for key in perfect_subtrees(0, self.size):
            start, made = rows.get(key[0], (0, []))
            inside = start <= key[1] < start + len(made)
            new_edge[key] = made[key[1] - start] if inside else edge[key]
        self.edge = new_edge

    def _stored(self, level: int, first: int, count: int) -> list[tuple[int, bytes]]:
        lo, rows = self.prefetched.get(level, (0, []))
        at = first - lo
        if 0 <= at and at + count <= len(rows) and rows[at][0] == first:
            if rows[at + count - 1][0] == first + count - 1:  # no gap in between
                return rows[at : at + count]
        return self.store.audit_nodes_range(level, first, first + count)

    def _compare(self, level: int, first: int, computed: list[bytes]) -> None:
        stored = self._stored(level, first, len(computed))
        self.report.nodes_checked += len(computed)
        if len(stored) == len(computed) and [h for _, h in stored] == computed:
            return  # the common case, compared at C speed
        found = dict(stored)
        bad_leaves = self.bad_leaves
        for offset, value in enumerate(computed):
            idx = first + offset
            if found.get(idx) == value:
                continue
            start = idx << level
            if level == 0:
                bad_leaves.append(idx)
                what = "missing" if idx not in found else "different"
                self.report.add(
                    idx,
                    f"entry {idx}: its leaf hash is {what} in the tree "
                    "(entry edited, reordered or inserted)",
                )
                continue
            # A node above a bad leaf differs too; only report nodes changed on their own.
            pos = bisect.bisect_left(bad_leaves, start)
            if pos < len(bad_leaves) and bad_leaves[pos] < start + (1 << level):
                continue
            self.report.add(
                start,
                f"Merkle node ({level}, {idx}) over entries {start}.."
                f"{start + (1 << level) - 1} does not match them",
            )


def _checkpoints(store: Store, public_key: bytes, report: VerifyReport) -> list[Checkpoint]:
    valid: list[Checkpoint] = []
    for stored_size, blob in store.audit_all_checkpoints():
        try:
            checkpoint = verify_checkpoint(public_key, blob)
        except CheckpointError:
            report.add(None, f"the checkpoint stored at size {stored_size} is not validly signed")
            continue
        if checkpoint.size != stored_size:
            report.add(None, f"the checkpoint stored at size {stored_size} names another size")
            continue
        valid.append(checkpoint)
    report.checkpoints = len(valid)
    report.latest_checkpoint = max((c.size for c in valid), default=0)
    return sorted(valid, key=lambda c: c.size)


def verify_log(
    store: Store,
    public_key: bytes,
    *,
    check_data: bool = True,
    page: int = PAGE,
    progress: Callable[[int, int], None] | None = None,
    seal: LogSeal | None = None,
) -> VerifyReport:
    """Verify the whole log (and the data it vouches for); see the module docstring.
    With `seal` (needs the key), entries nobody sealed are found too (6. above)."""
    started = time.perf_counter()
    report = VerifyReport()
    newest = store.history(HistoryQuery(count=1))
    max_seq = newest[0].seq if newest else 0  # read before the size: see _check_data
    size = report.size = store.audit_size()
    checkpoints = _checkpoints(store, public_key, report)
    for checkpoint in checkpoints:
        if checkpoint.size > size:
            report.add(
                size,
                f"a checkpoint covers {checkpoint.size} entries but the log ends at {size}: "
                "entries were removed from its end",
            )
    tree = _Tree(store, report)
    writes = _Writes()
    cuts = sorted({c.size for c in checkpoints if c.size <= size})
    roots = {c.size: c.root for c in checkpoints}
    for start, stop, rows, nodes in _pages(store, size, page):
        tree.prefetched = nodes
        _check_entries(report, writes, rows)
        run: list[bytes] = []
        expected = start
        for row in rows:
            idx, raw = row[0], row[1]
            if idx != expected and tree.broken_at is None:
                _flush(tree, run, cuts, roots, report)
                run = []
                tree.broken_at = expected
                report.add(expected, f"entry {expected} is missing (deleted from the log)")
            expected = idx + 1
            if tree.broken_at is None:
                run.append(raw)
            else:
                _check_leaf(store, report, idx, raw)
        if expected != stop and tree.broken_at is None:
            tree.broken_at = expected
            report.add(expected, f"entry {expected} is missing (deleted from the log)")
        if tree.broken_at is None or run:
            _flush(tree, run, cuts, roots, report)
        if progress is not None:
            progress(stop, size)
    if tree.broken_at is None:
        report.root = tree.root()
        _check_beyond(store, report, size)
        if seal is not None:
            _check_seal(store, report, seal, size)
    if check_data:
        _check_data(store, report, writes, size, max_seq)
    report.findings.sort(key=lambda f: (f.data, f.index is None, f.index or 0))
    report.seconds = time.perf_counter() - started
    return report


_Page = tuple[int, int, list[Any], dict[int, tuple[int, list[tuple[int, bytes]]]]]


def _read_page(store: Store, start: int, stop: int) -> _Page:
    """The entries of [start, stop) and the stored nodes they complete: at level L,
    indexes [start >> L, stop >> L) (as merkle.new_nodes_for_append walks up)."""
    nodes = {}
    level = 0
    while (stop >> level) > (start >> level):
        lo = start >> level
        nodes[level] = (lo, store.audit_nodes_range(level, lo, stop >> level))
        level += 1
    return start, stop, store.audit_rows(start, stop), nodes


def _pages(store: Store, size: int, page: int) -> Iterator[_Page]:
    """The log in pages, the next one read in the background while this one is checked
    (reading waits on the database with the GIL released: about half the time)."""
    bounds = [(start, min(start + page, size)) for start in range(0, size, page)]
    if not bounds:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="phivault-verify") as pool:
        ahead = pool.submit(_read_page, store, *bounds[0])
        for number in range(len(bounds)):
            current = ahead.result()
            if number + 1 < len(bounds):
                ahead = pool.submit(_read_page, store, *bounds[number + 1])
            yield current


def _flush(
    tree: _Tree, run: list[bytes], cuts: list[int], roots: dict[int, bytes], report: VerifyReport
) -> None:
    """Extend the recomputed tree with `run`, checking each checkpoint root on the way."""
    at = 0
    while at < len(run):
        pos = bisect.bisect_right(cuts, tree.size)
        cut = cuts[pos] if pos < len(cuts) else None
        take = len(run) - at if cut is None else min(len(run) - at, cut - tree.size)
        tree.extend(run[at : at + take])
        at += take
        if cut is not None and tree.size == cut and tree.root() != roots[cut]:
            earlier = [c for c in cuts if c < cut]
            since = earlier[-1] if earlier else 0
            if any(f.index is not None and since <= f.index < cut for f in report.findings):
                continue  # a changed entry or node there is named already, more precisely
            report.add(
                since,
                f"the signed checkpoint at size {cut} does not match the entries: history "
                f"from entry {since} to {cut - 1} was rewritten",
            )


def _check_entries(report: VerifyReport, writes: _Writes, rows: list[tuple[Any, ...]]) -> None:
    """Each entry is well formed, its search columns are derived from it, and what it says
    about data versions is noted. The hot loop of `verify`: kept to plain tuple work (it
    is what index_row_of and decode_entry compute, without building objects)."""
    loads, see = orjson.loads, writes.see
    for row in rows:
        idx = row[0]
        try:
            entry = loads(row[1])
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
            report.add(idx, f"entry {idx} is not a well-formed audit entry")
            continue
        if derived != row[2:]:
            report.add(idx, f"entry {idx}: its search index row does not match it")
        if "version" in entry:
            see(report, idx, entry)


def _check_seal(store: Store, report: VerifyReport, seal: LogSeal, size: int) -> None:
    report.sealed = True
    for index, message, vague in seal_findings(
        store, seal, size, report.root, report.latest_checkpoint
    ):
        if vague and any(
            not f.data and f.index is not None and f.index >= index for f in report.findings
        ):
            continue  # a changed entry or node there is named already, more precisely
        report.add(index, message)


def _check_leaf(store: Store, report: VerifyReport, idx: int, raw: bytes) -> None:
    stored = store.audit_nodes([(0, idx)]).get((0, idx))
    report.nodes_checked += 1
    if stored != leaf_hash(raw):
        report.add(idx, f"entry {idx}: its leaf hash is missing or different in the tree")


def _check_beyond(store: Store, report: VerifyReport, size: int) -> None:
    for level in range(max(size, 1).bit_length() + 1):
        first = size >> level
        if store.audit_nodes_range(level, first, _BEYOND):
            report.add(size, f"Merkle nodes exist beyond entry {size - 1}: entries were removed")
            return


def _history(store: Store) -> Iterable[Any]:
    cursor: int | None = None
    while True:
        records = store.history(HistoryQuery(before_seq=cursor, count=2000))
        if not records:
            return
        yield from records
        cursor = records[-1].seq


def _check_data(
    store: Store, report: VerifyReport, writes: _Writes, size: int, max_seq: int
) -> None:
    """Data rows against write entries. Versions newer than `max_seq` (read before the
    log size) may belong to writes whose entries came after `size`: they are skipped, and
    versions without an entry are looked up once more in the entries written meanwhile."""
    unaudited: list[VersionKey] = []
    pending = dict(writes.hashes)
    for record in _history(store):
        if record.seq > max_seq:
            continue
        report.versions_checked += 1
        key = (record.rtype, record.rid, record.version)
        written = pending.pop(key, None)
        if written is None:
            unaudited.append(key)
            continue
        digest = hashlib.sha256(record.body).hexdigest() if record.body is not None else None
        if digest != written[1]:
            report.add(
                written[0],
                f"entry {written[0]}: data version {'/'.join(map(str, key))} no longer matches "
                "the hash this entry recorded",
                data=True,
            )
    for key, (index, _) in pending.items():
        report.add(
            index,
            f"entry {index}: data version {'/'.join(map(str, key))} is missing from the store",
            data=True,
        )
    if unaudited:
        late = {
            (e.get("type"), e.get("id"), e.get("version"))
            for _, raw in store.audit_entries(size, store.audit_size())
            for e in [decode_entry(raw)]
        }
        for key in unaudited:
            if key not in late:
                report.add(
                    None, f"data version {'/'.join(map(str, key))} has no audit entry", data=True
                )
    live = {(r.rtype, r.rid): r for r in store.iter_current() if r.seq <= max_seq}
    for (rtype, rid), (version, index, action) in writes.latest.items():
        record = live.get((rtype, rid))
        if record is None:
            if action != "delete":
                current = store.current(rtype, rid)
                if current is None or current.seq <= max_seq:
                    report.add(index, f"entry {index}: {rtype}/{rid} is no longer live", data=True)
        elif record.version != version:
            report.add(
                index,
                f"entry {index}: the current version of {rtype}/{rid} is not the latest "
                "audited one (rolled back)",
                data=True,
            )
