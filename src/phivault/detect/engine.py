"""The detection engine: reads the audit log in order from its cursor, feeds every entry
to every detector, turns findings into alerts, and remembers where it stopped.

On start it replays the `baseline_days` before its cursor (warm-up) so that detectors
know each user's habits; what they report during warm-up was judged by an earlier scan
and is dropped. The cursor, and the root of the tree the engine has read, are kept in
`detect_state`, so `alerts scan` and the detector task in `serve` continue each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from phivault.audit.entry import decode_entry
from phivault.detect.alerts import ENGINE_ACTOR, AlertStore
from phivault.detect.courtesy import Courtesy
from phivault.detect.facts import ClinicFacts
from phivault.detect.model import Alert, Entry, Finding, Severity, format_instant
from phivault.detect.registry import Detector
from phivault.detect.sql import DetectSql
from phivault.detect.tree import CompactRange, stored_root
from phivault.errors import IntegrityError, StoreError
from phivault.store.base import Store

log = logging.getLogger("phivault.detect")

BATCH = 1000
DAY = 86_400.0
CURSOR = "cursor"
TREE = "tree"


class ScanStopped(Exception):
    """The server is stopping: the scan ends without saving, the next start resumes."""


@dataclass
class ScanReport:
    entries: int = 0
    findings: int = 0
    alerts: list[Alert] = field(default_factory=list)
    cursor: int = 0


class Engine:
    def __init__(
        self,
        store: Store,
        facts: ClinicFacts,
        detectors: Sequence[Detector],
        alerts: AlertStore,
        *,
        clock: Callable[[], float],
        baseline_days: int = 28,
        announce: Callable[[list[Alert]], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.stopping = stopping
        self.sql = DetectSql(store)
        self.facts = facts
        self.detectors = list(detectors)
        self.alerts = alerts
        self.clock = clock
        self.baseline_days = baseline_days
        self.announce = announce
        self.cursor = 0
        self.tree = CompactRange()
        self._started = False

    # -- start: cursor, tree, warm-up ------------------------------------------------------------
    def start(self, since: float | None = None) -> list[Finding]:
        """Load the cursor (or start at `since`), check the tree and replay the baseline.
        Returns findings about the log itself (a rewritten history)."""
        self._started = True
        findings: list[Finding] = []
        saved = self.sql.state(CURSOR)
        cursor = int(saved) if saved is not None else 0
        if since is not None:
            span = self.store.audit_time_span(((">=", format_instant(since)),))
            cursor = span[0] if span is not None else self.store.audit_size()
        cursor = min(cursor, self.store.audit_size())
        findings.extend(self._load_tree(cursor))
        self.cursor = cursor
        if cursor > 0 and self.baseline_days > 0:
            self._warm_up(cursor)
        return findings

    def _load_tree(self, cursor: int) -> list[Finding]:
        saved = self.sql.state(TREE)
        try:
            self.tree = CompactRange.from_store(self.store, cursor)
        except IntegrityError:
            self.tree = CompactRange()
            return [_tree_finding("the audit tree is missing nodes", cursor, self.clock())]
        if saved is None:
            return []
        size_text, _, root_hex = saved.partition(":")
        size = int(size_text)
        if size == 0 or size > self.store.audit_size():
            if size > self.store.audit_size():
                return [
                    _tree_finding(
                        "the audit log is shorter than when last read", size, self.clock()
                    )
                ]
            return []
        try:
            now_root = stored_root(self.store, size)
        except IntegrityError:
            now_root = None
        if now_root is None or now_root.hex() != root_hex:
            return [_tree_finding("audit entries already read were changed", size, self.clock())]
        return []

    def _warm_up(self, cursor: int) -> None:
        first = self.store.audit_entries(cursor - 1, cursor)
        if not first:
            return
        try:
            last_time = Entry.from_fields(cursor - 1, decode_entry(first[0][1])).at
        except (IntegrityError, KeyError, ValueError):
            return
        span = self.store.audit_time_span(
            ((">=", format_instant(last_time - self.baseline_days * DAY)),)
        )
        start = span[0] if span is not None else cursor
        for entry in self._entries(start, cursor, track=False):
            for detector in self.detectors:
                self._observe(detector, entry)  # baselines only; verdicts were given before

    # -- scanning ----------------------------------------------------------------------------------
    def scan(self, upto: int | None = None) -> ScanReport:
        findings: list[Finding] = [] if self._started else self.start()
        report = ScanReport(cursor=self.cursor)
        size = self.store.audit_size() if upto is None else min(upto, self.store.audit_size())
        for entry in self._entries(self.cursor, size, track=True, bad=findings):
            report.entries += 1
            for detector in self.detectors:
                findings.extend(self._observe(detector, entry))
        self.cursor = max(self.cursor, size)
        now = self.clock()
        for detector in self.detectors:
            try:
                findings.extend(detector.tick(now, self.facts))
            except Exception as exc:  # one broken detector must not stop the others
                log.error("detector %s failed on tick: %s", detector.name, type(exc).__name__)
        findings.extend(self._check_tree())
        report.findings = len(findings)
        report.alerts = self.alerts.raise_findings(findings)
        self._save()
        report.cursor = self.cursor
        if self.announce is not None and report.alerts:
            self.announce(report.alerts)
        return report

    def _entries(
        self, start: int, stop: int, *, track: bool, bad: list[Finding] | None = None
    ) -> Iterator[Entry]:
        position = start
        courtesy = Courtesy()  # a scan of a large log must not hold up request threads
        while position < stop:
            rows = self.store.audit_entries(position, min(position + BATCH, stop))
            if not rows:
                break
            for idx, raw in rows:
                courtesy.tick()
                if self.stopping():
                    # Nothing of this scan is saved or raised: the next scan starts at the
                    # saved cursor again, so no access goes unexamined and none twice.
                    raise ScanStopped()
                if track:
                    self.tree.push(bytes(raw))
                try:
                    entry = Entry.from_fields(idx, decode_entry(bytes(raw)))
                except (IntegrityError, KeyError, ValueError):
                    if bad is not None:
                        bad.append(
                            _tree_finding("an audit entry cannot be read", idx, self.clock())
                        )
                    continue
                if entry.actor != ENGINE_ACTOR:
                    yield entry
            position = rows[-1][0] + 1

    def _observe(self, detector: Detector, entry: Entry) -> list[Finding]:
        try:
            return list(detector.observe(entry, self.facts))
        except StoreError:
            # The store is unavailable (or closed): every detector would fail on every
            # entry. The whole scan fails once and is retried from the saved cursor.
            raise
        except Exception as exc:  # one broken detector must not stop the others
            log.error(
                "detector %s failed on entry %d: %s", detector.name, entry.idx, type(exc).__name__
            )
            return []

    def _check_tree(self) -> list[Finding]:
        if self.tree.size != self.cursor or self.cursor == 0:
            return []
        try:
            stored = stored_root(self.store, self.cursor)
        except IntegrityError:
            stored = None
        if stored != self.tree.root():
            return [
                _tree_finding("audit entries already read were changed", self.cursor, self.clock())
            ]
        return []

    def _save(self) -> None:
        root = self.tree.root()
        with self.store.write() as tx:
            self.sql.put_state(tx, CURSOR, str(self.cursor))
            if root is not None and self.tree.size == self.cursor:
                self.sql.put_state(tx, TREE, f"{self.tree.size}:{root.hex()}")


def _tree_finding(what: str, where: int, now: float) -> Finding:
    return Finding(
        detector="integrity",
        kind="audit-tampering",
        severity=Severity.CRITICAL,
        title=f"The audit log failed the detector's own check: {what}. "
        "Run `phivault audit verify` and compare with the witness.",
        group=f"integrity:audit-tampering:{what}",
        evidence=(where,),
        at=now,
        details={"at_entry": str(where)},
    )
