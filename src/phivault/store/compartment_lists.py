"""The patient-compartment predicate of a search: which compartments a search may reach.

The access policy restricts a clinician's searches to their related patients, hundreds of
them, the same list search after search. A list is bound one parameter each while short;
longer, it is written into the statement (`Patient/<id>` values only); longer still, and
where the caller's connection can hold one (SQLite readers), it is a one-column TEMP table
of that connection, named by a process-wide id that always stands for one list.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable

from phivault.store.search_spec import CompartmentMatch

LITERAL_COMPARTMENTS = 16  # compartment lists at least this long are written, not bound
SET_COMPARTMENTS = 64  # ... and at least this long joined from a compartment set, if any
SET_TABLE = "phivault_set_"  # + set id: a TEMP table of the reading connection
_SAFE_COMPARTMENT = re.compile(r"Patient/[A-Za-z0-9.\-]{1,64}")

CompartmentSets = dict[int, tuple[str, ...]]


class _SetIds:
    """Process-wide ids of compartment lists: one id always stands for one list (ids are
    never reused), so a connection that loaded a set under an id holds exactly that list.
    The last few hundred lists are remembered; one forgotten gets a new id when next met."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._ids: OrderedDict[tuple[str, ...], int] = OrderedDict()
        # id(list) -> (list, its set id): the same tuple object, met again and again (the
        # policy caches its terms), is found without hashing its hundreds of values. The
        # tuple is held, so its id() cannot be reused while it is in here.
        self._same: dict[int, tuple[tuple[str, ...], int]] = {}
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    def get(self, compartments: tuple[str, ...]) -> int:
        hit = self._same.get(id(compartments))
        if hit is not None and hit[0] is compartments:
            return hit[1]
        with self._lock:
            found = self._ids.get(compartments)
            if found is None:
                found = self._ids[compartments] = next(self._next)
                while len(self._ids) > self._size:
                    self._ids.popitem(last=False)
            else:
                self._ids.move_to_end(compartments)
            if len(self._same) >= self._size:
                self._same.clear()
            self._same[id(compartments)] = (compartments, found)
            return found


set_ids = _SetIds()


def compartment_predicate(
    atom: CompartmentMatch,
    alias: str,
    sets: CompartmentSets | None,
    bind: Callable[..., None],
) -> str:
    """In one of the compartments (a NULL compartment is in none), or unassigned. `sets`:
    where lists to join from a TEMP table are collected (None: write or bind every list);
    `bind`: adds the statement's parameters in order."""
    parts: list[str] = []
    if sets is not None and len(atom.compartments) >= SET_COMPARTMENTS:
        set_id = set_ids.get(atom.compartments)  # an int: safe to write
        sets[set_id] = atom.compartments
        parts.append(
            f"({alias}.compartment IS NOT NULL AND {alias}.compartment IN temp.{SET_TABLE}{set_id})"
        )
    elif atom.compartments:
        listed = _literal_list(atom.compartments)
        if listed is None:
            bind(*atom.compartments)
            listed = ", ".join("?" * len(atom.compartments))
        parts.append(f"({alias}.compartment IS NOT NULL AND {alias}.compartment IN ({listed}))")
    if atom.unassigned:
        parts.append(f"{alias}.compartment IS NULL")
    return "(" + " OR ".join(parts) + ")" if parts else "1 = 0"


@functools.lru_cache(maxsize=256)
def _literal_list(compartments: tuple[str, ...]) -> str | None:
    """A long compartment list written into the statement ('Patient/a', 'Patient/b', ...),
    or None: bind it. The access policy restricts a clinician's searches to their related
    patients, hundreds of them, the same list search after search; binding each one again
    on every statement cost more than the search itself. Only `Patient/<FHIR id>` values
    are written (no quote or other SQL can occur in them); anything else is bound."""
    if len(compartments) < LITERAL_COMPARTMENTS or not all(
        _SAFE_COMPARTMENT.fullmatch(c) for c in compartments
    ):
        return None
    return ", ".join(f"'{c}'" for c in compartments)
