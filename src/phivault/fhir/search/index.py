"""The search index row and the value rules shared by indexing and querying.

An `IndexEntry` is one value of one search parameter of one resource version. The store
persists these rows (blinding the identifying ones); the query layer compares search
arguments against them. The query layer must normalise its arguments with the same helpers
as the indexer (`normalize_string`, `date_range`, `decimal_range`), or matches are missed.

Column meaning by kind (FHIR R4 search.html):

- token: ``system`` ("" when the value has none), ``value`` the code, ``text`` the display
  or CodeableConcept.text (for ``:text``). A CodeableConcept also yields one text-only entry
  (``system`` and ``value`` None) for its ``text``. An Identifier with a typed coding is
  indexed again with ``system`` ``type-system|type-code`` (for ``:of-type``).
- string: ``value`` normalised (`normalize_string`), ``text`` the raw value (``:exact``).
- date: ``lo`` inclusive, ``hi`` exclusive, epoch seconds UTC; None means unbounded (an open
  Period end).
- reference: ``system`` the target type and ``value`` the id for a relative ``Type/id``
  reference (any ``/_history/v`` dropped); an absolute URL or URN is kept whole in ``value``
  with ``system`` None; ``text`` is ``"system|value"`` of Reference.identifier (for
  ``:identifier``); a reference to a contained resource (``#id``) is not indexed.
- quantity: ``system`` the unit system, ``value`` the unit code (else the unit text),
  ``text`` the unit text, ``lo``/``hi`` the implicit precision range of the value
  (``5.4`` -> [5.35, 5.45)); a comparator (``<5``) opens one end. A UCUM unit that
  ucum.py converts also yields a row under ``<param>:ucum`` in canonical units
  (``5.4 mg`` -> ``g``, [0.00535, 0.00545)).
- number: ``lo``/``hi`` as for quantity.
- uri: ``value`` the uri.
- composite: ``value`` the components' canonical parts joined by ``$``: token
  ``system|code``, string the normalised text, reference ``Type/id`` or the URL, uri the
  uri, quantity ``system|code`` of its unit, date and number "" (empty); the range of the
  first date/number/quantity component goes to ``lo``/``hi``.
"""

from __future__ import annotations

import calendar
import math
import re
import unicodedata
from decimal import Decimal, InvalidOperation

from phivault.types import IndexRow

KINDS = ("token", "string", "date", "reference", "quantity", "number", "uri", "composite")


# One row type from extraction to storage: the store persists exactly these (after the
# crypto layer blinds identifying values), without a conversion on the write path.
IndexEntry = IndexRow


def normalize_string(text: str) -> str:
    """Case-folded, accents stripped, whitespace collapsed (FHIR string matching)."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)
_DAY = 86400


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (any year, no datetime)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# No memoisation here or in _decimal_range_text: the values are PHI (birth dates, results)
# and a process-wide cache would keep them in memory long after the request.
def date_range(text: str) -> tuple[float, float] | None:
    """The implicit range [lo, hi) of a FHIR date/dateTime/instant, in epoch seconds UTC.

    The range spans the value's precision: "2020" is the whole year, "2020-03" the month,
    "2020-03-01T10:00" the minute. A time without a timezone is taken as UTC, and so is a
    date without a time. Returns None for anything that is not a FHIR date.
    """
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction, zone = match.groups()
    year = int(year_s)
    if month_s is None:
        return float(_days_from_civil(year, 1, 1) * _DAY), float(
            _days_from_civil(year + 1, 1, 1) * _DAY
        )
    month = int(month_s)
    if not 1 <= month <= 12:
        return None
    if day_s is None:
        start = _days_from_civil(year, month, 1)
        after = _days_from_civil(year + month // 12, month % 12 + 1, 1)
        return float(start * _DAY), float(after * _DAY)
    day = int(day_s)
    if year < 1 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    base = _days_from_civil(year, month, day) * _DAY
    if hour_s is None:
        return float(base), float(base + _DAY)
    hour, minute = int(hour_s), int(minute_s)
    second = int(second_s) if second_s is not None else 0
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset = 0
    if zone is not None and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    lo = float(base + hour * 3600 + minute * 60 + second - offset)
    if second_s is None:
        return lo, lo + 60.0
    if fraction is None:
        return lo, lo + 1.0
    return lo + float(fraction), lo + float(fraction) + 10.0 ** -(len(fraction) - 1)


def decimal_range(value: object) -> tuple[float, float] | None:
    """The implicit precision range of a FHIR decimal: ``5.4`` -> [5.35, 5.45), ``100`` ->
    [99.5, 100.5). Accepts int, float (its shortest repr), Decimal or numeric text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return _decimal_range_text(repr(value))
    if isinstance(value, int):
        return value - 0.5, value + 0.5
    if isinstance(value, (Decimal, str)):
        return _decimal_range_text(str(value))
    return None


def _decimal_range_text(text: str) -> tuple[float, float] | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite decimals have an int exponent
    half = Decimal(5).scaleb(exponent - 1)
    return float(number - half), float(number + half)
