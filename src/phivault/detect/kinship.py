"""Kinship between staff and patients, found on blind-index tokens only.

A patient who shares a staff member's rare surname, or at least two rare parts of their
home address (street line and postal code, not a shared town), may be family; a patient
with the staff member's own surname, given name and address or phone is that staff
member's own record (a co-worker, for everybody else). Tokens are the keyed values search
uses: no name or address is ever read in clear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

RARE_SHARE = 4  # a name or address token on more patients than this is too common to mean kin


@dataclass
class Kinship:
    """Per practitioner: the patients (pseudonyms) sharing a rare surname or address."""

    surname: dict[str, set[str]] = field(default_factory=dict)
    address: dict[str, set[str]] = field(default_factory=dict)
    staff_patients: dict[str, str] = field(default_factory=dict)  # pseudonym -> practitioner


def kinship_of(
    staff: dict[str, dict[str, set[str]]],
    patients: dict[str, dict[str, set[str]]],
    pseudonymize: Callable[[str], str],
) -> Kinship:
    """Match staff and patients on blind tokens. A surname or address shared by more than
    RARE_SHARE patients is too common to suggest kinship and is ignored; a patient with the
    staff member's surname, given name and an address or contact point is that staff
    member's own record (a co-worker, for everybody else)."""
    share: dict[tuple[str, str], int] = {}
    for fields in patients.values():
        for param in ("family", "address"):
            for token in fields.get(param, ()):
                share[(param, token)] = share.get((param, token), 0) + 1
    kin = Kinship()
    for rid, fields in patients.items():
        pseudonym = pseudonymize(f"Patient/{rid}")
        for who, mine in staff.items():
            same_family = _shared(fields, mine, "family")
            same_address = _shared(fields, mine, "address")
            if (
                same_family
                and _shared(fields, mine, "given")
                and (same_address or _shared(fields, mine, "contact"))
            ):
                kin.staff_patients[pseudonym] = who
                continue
            if same_family and all(share[("family", t)] <= RARE_SHARE for t in same_family):
                # A surname many patients share (Smith) says nothing about kinship.
                kin.surname.setdefault(who, set()).add(pseudonym)
            rare = [t for t in same_address if share[("address", t)] <= RARE_SHARE]
            if len(rare) >= 2:  # street line and postal code, not a shared town
                kin.address.setdefault(who, set()).add(pseudonym)
    return kin


def _shared(a: dict[str, set[str]], b: dict[str, set[str]], param: str) -> set[str]:
    return a.get(param, set()) & b.get(param, set())
