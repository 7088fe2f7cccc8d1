"""The patient behind an audit pseudonym, for every patient of the clinic, kept compact.

The audit log names a patient only by a keyed pseudonym (HMAC of "Patient/<id>"), which
cannot be inverted: to read a patient's record for an access it must be looked up among
every Patient's pseudonym. The table is held as two flat arrays instead of a dict of
strings (about 55 bytes a patient instead of about 200): the first 40 bits of each
pseudonym next to the row's position, sorted, and the ids back to back. A lookup is a
binary search, then the pseudonym is computed again from the id found, so that a shared
prefix can never answer for another patient.

An unknown pseudonym (a patient created since) re-reads, at most every RECHECK_S, the
Patients last updated since the newest instant read (the store's index on (type, last
updated)) into a small dict, and at most every REBUILD_S all of them (a restore or import
may write old instants); the original read every patient on each such miss.
"""

from __future__ import annotations

import bisect
import threading
import time
from array import array
from collections.abc import Callable, Iterable

from phivault.detect.courtesy import Courtesy
from phivault.detect.model import format_instant, parse_instant
from phivault.detect.sql import DetectSql

PREFIX_BITS = 40
POSITION_BITS = 64 - PREFIX_BITS  # up to 16,777,216 patients
RECHECK_S = 10.0  # an unknown pseudonym re-reads the newest patients at most this often
REBUILD_S = 600.0  # ... and every patient at most this often (ids written with old instants)
SINCE_SLACK_S = 60.0  # a re-read starts this long before the newest instant seen
REBUILD_AT = 50_000  # patients found by re-reads before the arrays are rebuilt


def _prefix(pseudonym: str) -> int:
    return int(pseudonym[: PREFIX_BITS // 4], 16)


class PatientIndex:
    """Pseudonym -> "Patient/<id>" of the clinic's live Patients."""

    def __init__(
        self,
        sql: DetectSql,
        pseudonymize: Callable[[str], str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sql = sql
        self.pseudonymize = pseudonymize
        self.clock = clock
        self._lock = threading.Lock()
        self._keys = array("Q")  # (prefix << POSITION_BITS) | position, sorted
        self._ids = bytearray()  # the ids, utf-8, back to back
        self._ends = array("Q")  # where each id ends in _ids, by position
        self._recent: dict[str, str] = {}  # created since the arrays were built
        self._newest = ""  # the newest last-updated instant read
        self._checked = -1e18
        self._built_at = -1e18
        self._built = False

    def __len__(self) -> int:
        return len(self._ends) + len(self._recent)

    def compartment(self, pseudonym: str) -> str | None:
        with self._lock:
            if not self._built:
                self._build()
            found = self._find(pseudonym)
            if found is None and self.clock() - self._checked > RECHECK_S:
                if self.clock() - self._built_at > REBUILD_S:
                    self._build()
                else:
                    self._read_newest()
                found = self._find(pseudonym)
            return found

    def clear(self) -> None:
        """Forget everything: the next lookup reads every patient again."""
        with self._lock:
            self._built = False

    # -- building ------------------------------------------------------------------------
    def _build(self) -> None:
        keys: array[int] = array("Q")
        ids = bytearray()
        ends: array[int] = array("Q")
        newest = ""
        courtesy = Courtesy()  # an HMAC per patient: a long loop in a server thread
        for rid, updated in self.sql.patient_rows():
            courtesy.tick()
            ids += rid.encode()
            ends.append(len(ids))
            key = _prefix(self.pseudonymize(f"Patient/{rid}"))
            keys.append(key << POSITION_BITS | (len(ends) - 1))
            newest = max(newest, updated)
        self._keys = array("Q", sorted(keys))
        self._ids, self._ends, self._newest = ids, ends, newest
        self._recent = {}
        self._checked = self._built_at = self.clock()
        self._built = True

    def _read_newest(self) -> None:
        rows = self.sql.patient_rows_since(_earlier(self._newest))
        for rid, updated in rows:
            self._recent[self.pseudonymize(f"Patient/{rid}")] = f"Patient/{rid}"
            self._newest = max(self._newest, updated)
        self._checked = self.clock()
        if len(self._recent) > REBUILD_AT:
            self._build()

    # -- lookups -------------------------------------------------------------------------
    def _find(self, pseudonym: str) -> str | None:
        recent = self._recent.get(pseudonym)
        if recent is not None:
            return recent
        try:
            prefix = _prefix(pseudonym)
        except ValueError:
            return None
        at = bisect.bisect_left(self._keys, prefix << POSITION_BITS)
        for key in self._candidates(at, prefix):
            compartment = f"Patient/{self._id(key & ((1 << POSITION_BITS) - 1))}"
            if self.pseudonymize(compartment) == pseudonym:
                return compartment
        return None

    def _candidates(self, at: int, prefix: int) -> Iterable[int]:
        while at < len(self._keys) and self._keys[at] >> POSITION_BITS == prefix:
            yield self._keys[at]
            at += 1

    def _id(self, position: int) -> str:
        start = self._ends[position - 1] if position else 0
        return self._ids[start : self._ends[position]].decode()


def _earlier(instant: str) -> str:
    """SINCE_SLACK_S before an instant as the store writes them, so that a transaction
    that committed late with an earlier instant is still read."""
    if not instant:
        return ""
    try:
        return format_instant(parse_instant(instant) - SINCE_SLACK_S)
    except ValueError:
        return ""
