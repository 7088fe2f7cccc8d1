"""UCUM units to canonical form, so quantity search compares 5.4 mg with 0.0054 g.

A compact subset of the Unified Code for Units of Measure (ucum.org, the "c/s" codes):
the SI base units, the metric prefixes, the derived and customary units common in clinical
data (L, mol, eq, osm, Pa, mm[Hg], cm[H2O], J, cal, W, N, Hz, kat, U, min, h, d, wk, mo,
a, %, [ppm], [lb_av], [oz_av], [in_i], [ft_i], [iU]/[IU]), powers of ten (`10*3`),
exponents (`m2`, `s-1`), `.` and `/`, and annotations (`{cells}`), plus the two special
temperature units Cel and [degF] (affine: only on their own). Anything else is "not
convertible" (None), and searches on it compare unit codes as before.

Canonical form: grams, metres, seconds, moles, kelvin, amperes, candela, and arbitrary
units ([iU]) as themselves, written as `g.m-3` (dimensions sorted, exponents after each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

SYSTEM = "http://unitsofmeasure.org"

Dims = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Canonical:
    """value in the unit -> (value + offset) * factor in `code` (offset for Cel, [degF])."""

    code: str
    factor: float
    offset: float = 0.0

    def convert(self, value: float) -> float:
        return (value + self.offset) * self.factor


_PREFIXES = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3,
    "h": 1e2, "da": 1e1, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "n": 1e-9, "p": 1e-12,
    "f": 1e-15, "a": 1e-18, "z": 1e-21, "y": 1e-24,
}  # fmt: skip

_PA = (1000.0, (("g", 1), ("m", -1), ("s", -2)))  # 1 Pa = 1 kg/(m.s2) = 1000 g.m-1.s-2
_J = (1000.0, (("g", 1), ("m", 2), ("s", -2)))
# atom -> (factor to canonical, dimensions, takes metric prefixes)
_ATOMS: dict[str, tuple[float, Dims, bool]] = {
    "m": (1.0, (("m", 1),), True),
    "g": (1.0, (("g", 1),), True),
    "s": (1.0, (("s", 1),), True),
    "mol": (1.0, (("mol", 1),), True),
    "K": (1.0, (("K", 1),), True),
    "A": (1.0, (("A", 1),), True),
    "cd": (1.0, (("cd", 1),), True),
    "L": (1e-3, (("m", 3),), True),
    "l": (1e-3, (("m", 3),), True),
    "eq": (1.0, (("mol", 1),), True),
    "osm": (1.0, (("mol", 1),), True),
    "Pa": (_PA[0], _PA[1], True),
    "bar": (1e5 * _PA[0], _PA[1], True),
    "mm[Hg]": (133.322387415 * _PA[0], _PA[1], False),
    "cm[H2O]": (98.0665 * _PA[0], _PA[1], False),
    "J": (_J[0], _J[1], True),
    "cal": (4.184 * _J[0], _J[1], True),
    "W": (1000.0, (("g", 1), ("m", 2), ("s", -3)), True),
    "N": (1000.0, (("g", 1), ("m", 1), ("s", -2)), True),
    "Hz": (1.0, (("s", -1),), True),
    "kat": (1.0, (("mol", 1), ("s", -1)), True),
    "U": (1e-6 / 60.0, (("mol", 1), ("s", -1)), True),  # umol/min
    "min": (60.0, (("s", 1),), False),
    "h": (3600.0, (("s", 1),), False),
    "d": (86400.0, (("s", 1),), False),
    "wk": (604800.0, (("s", 1),), False),
    "a": (31557600.0, (("s", 1),), False),  # Julian year
    "mo": (2629800.0, (("s", 1),), False),  # a / 12
    "%": (1e-2, (), False),
    "[ppm]": (1e-6, (), False),
    "[ppb]": (1e-9, (), False),
    "[lb_av]": (453.59237, (("g", 1),), False),
    "[oz_av]": (28.349523125, (("g", 1),), False),
    "[in_i]": (0.0254, (("m", 1),), False),
    "[ft_i]": (0.3048, (("m", 1),), False),
    "[iU]": (1.0, (("[iU]", 1),), True),
    "[IU]": (1.0, (("[iU]", 1),), True),
}
# Special units: value -> (value + offset) * factor kelvin; never combined with others.
_SPECIAL = {"Cel": Canonical("K", 1.0, 273.15), "[degF]": Canonical("K", 5.0 / 9.0, 459.67)}

_ANNOTATION = re.compile(r"\{[^{}]*\}")
_POWER_OF_TEN = re.compile(r"10[*^]([+-]?\d{1,2})")
_EXPONENT = re.compile(r"(.*?[^\d+-])([+-]?\d{1,2})?")
_MAX_LENGTH = 64


def canonical_param(param: str) -> str:
    """The index rows of a quantity parameter in canonical units are stored under this name
    (never a search parameter's own code: those have no ':')."""
    return f"{param}:ucum"


def canonical(code: str | None) -> Canonical | None:
    """How to bring a value in UCUM unit `code` to canonical units; None if not known."""
    if not code or len(code) > _MAX_LENGTH:
        return None
    return _canonical(code)


@lru_cache(maxsize=512)  # unit codes, never values
def _canonical(code: str) -> Canonical | None:
    special = _SPECIAL.get(code)
    if special is not None:
        return special
    # "{cells}/uL" -> "/uL", "10*3{cells}" -> "10*3": an annotation means 1
    text = _ANNOTATION.sub("", code)
    if "(" in text or ")" in text or "{" in text or "}" in text:
        return None
    factor = 1.0
    dims: dict[str, int] = {}
    for sign, term in _terms(text):
        found = _term(term) if term else (1.0, ())  # "/min": unity before the "/"
        if found is None:
            return None
        term_factor, term_dims = found
        factor *= term_factor**sign
        for dim, exponent in term_dims:
            dims[dim] = dims.get(dim, 0) + exponent * sign
    parts = [f"{d}{e if e != 1 else ''}" for d, e in sorted(dims.items()) if e]
    return Canonical(".".join(parts) or "1", factor)


def _terms(text: str) -> list[tuple[int, str]]:
    """(+1 or -1, term) for each term of a unit: `.` multiplies, `/` divides."""
    found: list[tuple[int, str]] = []
    sign = 1
    current = ""
    for ch in text:
        if ch in "./":
            found.append((sign, current))
            sign, current = (1 if ch == "." else -1), ""
        else:
            current += ch
    found.append((sign, current))
    return found


def _term(term: str) -> tuple[float, Dims] | None:
    if term == "1":
        return 1.0, ()
    power = _POWER_OF_TEN.fullmatch(term)
    if power is not None:
        return 10.0 ** int(power.group(1)), ()
    match = _EXPONENT.fullmatch(term)
    if match is None:
        return None
    atom, exponent = match.group(1), int(match.group(2) or 1)
    found = _atom(atom)
    if found is None:
        return None
    factor, dims = found
    return factor**exponent, tuple((d, e * exponent) for d, e in dims)


def _atom(text: str) -> tuple[float, Dims] | None:
    known = _ATOMS.get(text)
    if known is not None:
        return known[0], known[1]
    for prefix in (text[:2], text[:1]):
        base = _ATOMS.get(text[len(prefix) :]) if prefix in _PREFIXES else None
        if base is not None and base[2]:
            return _PREFIXES[prefix] * base[0], base[1]
    return None
