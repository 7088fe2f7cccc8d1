"""FHIR JSON that keeps decimal precision.

FHIR decimals carry their precision ("1.00" is not "1.0"), and a server must return what
it was sent. orjson parses numbers into floats, so a document whose numbers a float would
change is parsed again with `Decimal` for those numbers, and Decimals are written back
verbatim. Most resources have no such number and take the fast path.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

# A JSON number in value position. Matches inside strings only cost a slower parse.
_NUMBER = re.compile(rb"[:\[,]\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?=\s*[,\]\}])")


def loads(raw: bytes | str) -> Any:
    """Parse JSON; decimals that a float would alter are kept as `Decimal`.

    Raises orjson.JSONDecodeError (a ValueError) on malformed input.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    parsed = orjson.loads(data)
    if _needs_decimals(data):
        return json.loads(data, parse_float=Decimal)
    return parsed


def _needs_decimals(data: bytes) -> bool:
    for match in _NUMBER.finditer(data):
        token = match.group(1)
        if b"." not in token and b"e" not in token and b"E" not in token:
            continue  # integers survive as Python ints
        if repr(float(token)).encode() != token:
            return True
    return False


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)
