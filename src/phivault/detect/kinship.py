"""Kinship between staff and patients, found on blind-index tokens only.

A patient who shares a staff member's rare surname, or at least two rare parts of their
home address (a street line and postal code, say; one rare town alone is not enough), may
be family; a patient with the staff member's own surname, given name and address or
phone is that staff member's own record (a co-worker, for everybody else). Tokens are the
keyed values search uses: no name or address is ever read in clear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

RARE_SHARE = 4  # a name or address token on more patients than this is too common to mean kin
HELD = ("family", "given", "address")  # the parameters whose holders kinship looks up


@dataclass
class Kinship:
    """Per practitioner: the patients (pseudonyms) sharing a rare surname or address."""

    surname: dict[str, set[str]] = field(default_factory=dict)
    address: dict[str, set[str]] = field(default_factory=dict)
    staff_patients: dict[str, str] = field(default_factory=dict)  # pseudonym -> practitioner


Holders = dict[tuple[str, str], set[str]]  # (param, token) -> ids of the patients with it


def kinship_of(
    staff: dict[str, dict[str, set[str]]],
    patients: dict[str, dict[str, set[str]]],
    pseudonymize: Callable[[str], str],
) -> Kinship:
    """Kinship with every patient's tokens in hand (see `staff_kinship`)."""
    holders: Holders = {}
    for rid, fields in patients.items():
        for param in HELD:
            for token in fields.get(param, ()):
                holders.setdefault((param, token), set()).add(rid)
    return staff_kinship(staff, holders, patients, pseudonymize)


def candidates_of(mine: dict[str, set[str]], holders: Holders) -> set[str]:
    """The only patients that can be kin to, or the own record of, a staff member with
    tokens `mine`: those sharing a surname and a given name (own record), a rare surname
    (kin) or a rare address part (kin needs two of them)."""

    def held(param: str, *, rare: bool = False) -> set[str]:
        found: set[str] = set()
        for token in mine.get(param, ()):
            rids = holders.get((param, token), set())
            if not rare or len(rids) <= RARE_SHARE:
                found |= rids
        return found

    family = held("family")
    return (family & held("given")) | held("family", rare=True) | held("address", rare=True)


def staff_kinship(
    staff: dict[str, dict[str, set[str]]],
    holders: Holders,
    patients: dict[str, dict[str, set[str]]],
    pseudonymize: Callable[[str], str],
) -> Kinship:
    """Match staff and patients on blind tokens. A surname or address shared by more than
    RARE_SHARE patients is too common to suggest kinship and is ignored; a patient with the
    staff member's surname, given name and an address or contact point is that staff
    member's own record (a co-worker, for everybody else).

    `holders` must name every patient holding each of the staff's family, given and
    address tokens, and `patients` must give the tokens of the `candidates_of` each staff
    member; nobody else's are needed. Each staff member thus meets only the patients that
    could be kin or their own record: O(tokens + matches), not staff x patients, and a
    clinic of 100,000 patients is never held in memory at once."""
    pseudonyms: dict[str, str] = {}
    kin = Kinship()
    for who, mine in staff.items():
        for rid in candidates_of(mine, holders):
            fields = patients.get(rid, {})
            pseudonym = pseudonyms.get(rid)
            if pseudonym is None:
                pseudonym = pseudonyms[rid] = pseudonymize(f"Patient/{rid}")
            same_family = _shared(fields, mine, "family")
            same_address = _shared(fields, mine, "address")
            if (
                same_family
                and _shared(fields, mine, "given")
                and (same_address or _shared(fields, mine, "contact"))
            ):
                kin.staff_patients[pseudonym] = who
                continue
            if same_family and all(len(holders[("family", t)]) <= RARE_SHARE for t in same_family):
                # A surname many patients share (Smith) says nothing about kinship.
                kin.surname.setdefault(who, set()).add(pseudonym)
            rare = [t for t in same_address if len(holders[("address", t)]) <= RARE_SHARE]
            # Two rare parts (a street line and its postal code, say), not one rare town.
            # Any two count: a small town and its postal code do too (docs/DETECTION.md).
            if len(rare) >= 2:
                kin.address.setdefault(who, set()).add(pseudonym)
    return kin


def _shared(a: dict[str, set[str]], b: dict[str, set[str]], param: str) -> set[str]:
    return a.get(param, set()) & b.get(param, set())
