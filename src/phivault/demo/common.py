"""Shared pieces of the synthetic clinic: code systems, seeded streams, ids, dates.

Everything here is deterministic: the same seed gives the same values on every run
and every machine. Nothing reads the clock or the global `random` state.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Any

from phivault.demo.places import Region
from phivault.types import Resource

REFERENCE_DATE = date(2026, 1, 1)
"""The clinic's "today": past and future (appointments) are relative to it, never to the
clock, so that the same spec always gives the same clinic."""
REFERENCE_ORDINAL = REFERENCE_DATE.toordinal()

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
MRN_SYSTEM = "http://phivault.example/mrn"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
STAFF_ROLE_SYSTEM = "http://phivault.example/fhir/CodeSystem/staff-role"
"""Local code system for the staff roles the access policy maps to users."""
HL7_PRACTITIONER_ROLE = "http://terminology.hl7.org/CodeSystem/practitioner-role"


def seeded_stream(seed: int, stream: str) -> random.Random:
    """An independent, reproducible random stream for one part of the clinic.

    Separate streams keep parts independent: drawing one more value for a patient
    does not change the staff, and counting resources need not build them.
    """
    # Not for secrets: synthetic data must be reproducible from its seed, so a seeded
    # PRNG is the point. (String seeds are hashed with SHA-512, stable across runs.)
    return random.Random(f"phivault.demo:{seed}:{stream}")  # noqa: S311


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def new_id(rng: random.Random) -> str:
    """A random-looking but reproducible UUID (version 4 layout) as a FHIR id.

    Same text as str(uuid.UUID(int=..., version=4)), without building the object: ids
    are the single most frequent value the generator makes.
    """
    h = f"{(rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    """A CodeableConcept with one coding; a fresh object on every call.

    Yielded resources never share mutable parts, so a consumer may edit one in place.
    """
    return {
        "coding": [{"system": system, "code": code, "display": display}],
        "text": text or display,
    }


def quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    """A Quantity in UCUM."""
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def plain(display: str) -> str:
    """Drop SNOMED's semantic tag, which is not for people: "Asthma (disorder)" -> "Asthma"."""
    return display.rsplit(" (", 1)[0]


def ref(resource: Resource) -> dict[str, str]:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def instant(ordinal: int, minute_of_day: int, tz: str) -> str:
    """A FHIR dateTime/instant with seconds and the clinic's UTC offset."""
    hours, minutes = divmod(minute_of_day, 60)
    return f"{date.fromordinal(ordinal).isoformat()}T{hours:02d}:{minutes:02d}:00{tz}"


def weekday_ordinal(ordinal: int) -> int:
    """Move a Saturday back to Friday and a Sunday on to Monday: the clinic is closed."""
    weekday = (ordinal + 6) % 7  # date.fromordinal(1) is a Monday
    if weekday == 5:
        return ordinal - 1
    if weekday == 6:
        return ordinal + 1
    return ordinal


class IndexPermutation:
    """A seeded bijection of range(size): index i -> a unique, random-looking value.

    A 4-round Feistel network over the next even power of two, with cycle walking to stay
    inside range(size). Used for identifiers that must be unique (MRN, SSN, NPI) without
    remembering the ones already given out, so that generation can stream.
    """

    __slots__ = ("_half", "_keys", "_mask", "_size")

    def __init__(self, size: int, rng: random.Random) -> None:
        if size < 2:
            raise ValueError("permutation size must be at least 2")
        bits = (size - 1).bit_length()
        bits += bits & 1
        self._size = size
        self._half = bits // 2
        self._mask = (1 << self._half) - 1
        self._keys = tuple(rng.getrandbits(32) for _ in range(4))

    @property
    def size(self) -> int:
        return self._size

    def __call__(self, index: int) -> int:
        if not 0 <= index < self._size:
            raise ValueError("index outside the permutation")
        half, mask = self._half, self._mask
        value = index
        while True:
            left, right = value >> half, value & mask
            for key in self._keys:
                left, right = right, left ^ ((((right ^ key) * 0x9E3779B1) >> 7) & mask)
            value = (left << half) | right
            if value < self._size:
                return value


def luhn_check_digit(payload: str) -> int:
    """The Luhn check digit to append to `payload` (used by NPIs)."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        digit = ord(char) - 48
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def npi(base9: int) -> str:
    """A well-formed 10-digit NPI: 9 digits starting with 1, then the Luhn digit that
    the NPI standard computes over the card-issuer prefix 80840."""
    body = f"{100_000_000 + base9:09d}"
    return body + str(luhn_check_digit("80840" + body))


def ascii_fold(text: str) -> str:
    """Lower-case ASCII letters and digits only ("O'Brien" -> "obrien", "José" -> "jose")."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


@dataclass(frozen=True, slots=True)
class ClinicContext:
    """What every patient's records refer to, fixed once the staff has been yielded."""

    organization: str
    """The clinic, as a reference string "Organization/<id>"."""
    locations: tuple[str, ...]
    """References of the clinic's sites; the first is the main one."""
    clinicians: tuple[str, ...]
    """References of the staff who can be a patient's general practitioner."""
    nurses: tuple[str, ...]
    care_roles: dict[str, tuple[str, str]]
    """Practitioner reference -> HL7 practitioner-role (code, display) for care teams."""
    region: Region
    mrn: IndexPermutation
    ssn: IndexPermutation
