"""`phivault audit verify`: recompute the tree from every entry and compare everything.

What is checked, over the log in pages of a power-of-two size checked independently
(audit/verify_page.py; in worker processes for a large log) and merged in log order:

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
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

from phivault.audit.checkpoint import Checkpoint, verify_checkpoint
from phivault.audit.entry import REKEY, WRITE_ACTIONS, decode_entry
from phivault.audit.merkle import NodeKey, fold, perfect_subtrees
from phivault.audit.seal import LogSeal, seal_findings
from phivault.audit.verify_page import (
    Fact,
    PageResult,
    PageSource,
    check_page,
    read_page,
    worker_check,
    worker_open,
)
from phivault.errors import CheckpointError, StoreError
from phivault.store.base import HistoryQuery, Store

PAGE = 1 << 15  # entries per page (a power of two)
PARALLEL_FROM = 200_000  # entries from which worker processes pay for their start
MAX_KEPT = 10_000  # findings kept in full; all are counted
_BEYOND = 1 << 62  # an index no tree reaches

_T = TypeVar("_T")
_Job = tuple[int, int, tuple[int, ...]]  # start, stop, checkpoint sizes inside

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

    def see(self, report: VerifyReport, fact: Fact) -> None:
        """One entry's fact, in log order (verify_page.check_page extracts them)."""
        index, action, rtype, rid, version, digest, before = fact
        key = (rtype, rid, version)
        if action == REKEY:
            self._rekeyed(report, index, key, digest, before)
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
        self,
        report: VerifyReport,
        index: int,
        key: VersionKey,
        digest: str | None,
        before: str | None,
    ) -> None:
        """A re-encryption: the version's hash moves on, from exactly the one recorded."""
        known = self.hashes.get(key)
        if known is None or digest is None or before is None or known[1] != before:
            report.add(index, f"entry {index} re-encrypts a version it does not match")
            return
        self.former.setdefault(key, set()).add(before)
        self.hashes[key] = (index, digest)


class _Merge:
    """Page results, merged in log order: their findings and facts, and the tree above
    the pages (recomputed from the pages' roots once every page is in)."""

    def __init__(self, store: Store, report: VerifyReport, writes: _Writes, level: int) -> None:
        self.store, self.report, self.writes = store, report, writes
        self.level = level  # of a whole page's subtree
        self.broken_at: int | None = None  # first missing entry: positions after it are lost
        self.bad_leaves: list[int] = []  # ascending
        self.page_roots: list[bytes] = []  # of the whole pages before any gap
        self.tail: list[bytes] = []  # perfect subtrees of the last page (or up to the gap)
        self.cut_edges: dict[int, list[bytes]] = {}
        self.upper: dict[NodeKey, bytes] = {}

    def add(self, page: PageResult) -> None:
        report, see = self.report, self.writes.see
        for idx, message in page.entry_findings:
            report.add(idx, message)
        for fact in page.facts:
            see(report, fact)
        intact = self.broken_at is None  # the tree is recomputed up to the first gap only
        if intact and page.gap is not None:
            self.broken_at = page.gap
            report.add(page.gap, f"entry {page.gap} is missing (deleted from the log)")
        broken_at = self.broken_at
        report.nodes_checked += page.leaves_checked
        for idx, stored in page.bad_leaves:
            self.bad_leaves.append(idx)
            if broken_at is not None and idx >= broken_at:
                report.add(idx, f"entry {idx}: its leaf hash is missing or different in the tree")
            else:
                what = "different" if stored else "missing"
                report.add(
                    idx,
                    f"entry {idx}: its leaf hash is {what} in the tree "
                    "(entry edited, reordered or inserted)",
                )
        if not intact:
            return
        report.nodes_checked += page.nodes_checked
        for level, idx in page.bad_nodes:
            self._bad_node(level, idx)
        self.cut_edges.update(page.cut_edges)
        if page.gap is None and page.stop - page.start == 1 << self.level:
            self.page_roots.append(page.edge[0])
        else:
            self.tail = page.edge

    def _bad_node(self, level: int, idx: int) -> None:
        start = idx << level
        self.report.add(
            start,
            f"Merkle node ({level}, {idx}) over entries {start}.."
            f"{start + (1 << level) - 1} does not match them",
        )

    def finish(self, cuts: list[int], roots: dict[int, bytes]) -> bytes | None:
        """The tree above the pages, compared level by level; each checkpoint's root; the
        root of the whole log (None when an entry is missing)."""
        row, level = self.page_roots, self.level
        upper = self.upper
        upper.update(((level, i), h) for i, h in enumerate(row))
        sha256 = hashlib.sha256
        while len(row) > 1:
            row = [
                sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)
            ]
            level += 1
            upper.update(((level, i), h) for i, h in enumerate(row))
            self._compare(level, row)
        whole = len(self.page_roots) << self.level  # entries under whole intact pages
        limit = self.broken_at if self.broken_at is not None else self.report.size
        for pos, cut in enumerate(cuts):
            if cut > limit:
                break
            base = min(whole, (cut - 1) >> self.level << self.level)
            left = [upper[key] for key in perfect_subtrees(0, base)]
            if fold([*left, *self.cut_edges[cut]]) == roots[cut]:
                continue
            since = cuts[pos - 1] if pos else 0
            if any(f.index is not None and since <= f.index < cut for f in self.report.findings):
                continue  # a changed entry or node there is named already, more precisely
            self.report.add(
                since,
                f"the signed checkpoint at size {cut} does not match the entries: history "
                f"from entry {since} to {cut - 1} was rewritten",
            )
        if self.broken_at is not None:
            return None
        hashes = [upper[key] for key in perfect_subtrees(0, whole)] + self.tail
        return fold(hashes) if hashes else hashlib.sha256(b"").digest()

    def _compare(self, level: int, computed: list[bytes]) -> None:
        stored = self.store.audit_nodes_range(level, 0, len(computed))
        self.report.nodes_checked += len(computed)
        if len(stored) == len(computed) and [h for _, h in stored] == computed:
            return
        found = dict(stored)
        bad_leaves = self.bad_leaves
        for idx, value in enumerate(computed):
            if found.get(idx) == value:
                continue
            start = idx << level
            pos = bisect.bisect_left(bad_leaves, start)
            if pos < len(bad_leaves) and bad_leaves[pos] < start + (1 << level):
                continue  # a node above a bad leaf differs too
            self._bad_node(level, idx)


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
    workers: int | None = None,
) -> VerifyReport:
    """Verify the whole log (and the data it vouches for); see the module docstring.
    With `seal` (needs the key), entries nobody sealed are found too (6. above).

    The log is checked in pages of `page` entries (rounded down to a power of two), by
    `workers` processes (default: one per idle CPU for a log of PARALLEL_FROM entries
    or more, else this process alone); the result is the same either way."""
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
    level = max(page, 1).bit_length() - 1
    writes = _Writes()
    merge = _Merge(store, report, writes, level)
    cuts = sorted({c.size for c in checkpoints if 0 < c.size <= size})
    roots = {c.size: c.root for c in checkpoints}
    if workers is None:
        workers = _idle_cpus() if size >= PARALLEL_FROM else 1
    for result in _page_results(store, size, level, cuts, workers):
        merge.add(result)
        if progress is not None:
            progress(result.stop, size)
    root = merge.finish(cuts, roots)
    if root is not None:
        report.root = root
        _check_beyond(store, report, size)
        if seal is not None:
            _check_seal(store, report, seal, size)
    if check_data:
        _check_data(store, report, writes, size, max_seq)
    report.findings.sort(key=lambda f: (f.data, f.index is None, f.index or 0))
    report.seconds = time.perf_counter() - started
    return report


def _idle_cpus() -> int:
    """CPUs nobody else is using (1-minute load average). Worker processes cost about
    half as much CPU again as checking here (start-up, pickling each page's facts), so
    they only pay where cores are idle; on a busy machine they made verify slower."""
    cpus = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        busy = 0.0
    return max(1, min(cpus, int(cpus - busy + 0.5)))


def _page_results(
    store: Store, size: int, level: int, cuts: list[int], workers: int
) -> Iterator[PageResult]:
    """Every page checked, in log order: by worker processes, each with its own read
    connection, or here, with the next page read in the background (reading waits on the
    database with the GIL released)."""
    page = 1 << level
    jobs = [
        (start, stop, tuple(c for c in cuts if start < c <= stop))
        for start in range(0, size, page)
        for stop in [min(start + page, size)]
    ]
    source = store.audit_scan_source()
    if source is not None and workers > 1 and len(jobs) > 1:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        with ProcessPoolExecutor(
            min(workers, len(jobs)),
            mp_context=context,
            initializer=worker_open,
            initargs=(source,),
        ) as pool:
            try:
                yield from _in_order(pool, worker_check, jobs, 2 * workers)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): no verdict rather than a partial one.
                raise StoreError("audit verify lost a worker process") from None
        return
    # The scan connection returns rows as the driver gives them, without the store's
    # per-row conversions; it is used by the reading thread only.
    scan = source.open() if source is not None else None
    reader: PageSource = scan if scan is not None else store
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="phivault-verify") as pool:
            reads = _in_order(pool, lambda a, b, _c: read_page(reader, a, b), jobs, 1)
            for (start, stop, page_cuts), (rows, stored) in zip(jobs, reads, strict=True):
                yield check_page(start, stop, rows, stored, page_cuts)
    finally:
        if scan is not None:
            scan.close()


def _in_order(
    pool: Executor, fn: Callable[[int, int, tuple[int, ...]], _T], jobs: list[_Job], ahead: int
) -> Iterator[_T]:
    """fn over `jobs` in `pool`, results in order, at most `ahead` + 1 pending at once."""
    pending: deque[Future[_T]] = deque()
    for job in jobs:
        pending.append(pool.submit(fn, *job))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


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
