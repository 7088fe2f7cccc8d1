"""The paging cursor: an opaque, url-safe token holding a keyset position.

It carries the sort keys and id of a row plus the direction of travel; pages continue
strictly after (or before) that row, so resources created or deleted elsewhere never shift
a page, and no row is returned twice or skipped while its sort keys stay the same.
A cursor is checked against the request's sort keys before any of it reaches SQL.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson

from phivault.errors import BadRequest
from phivault.store.search_spec import SortKey

_TEXT = frozenset({"system", "value", "text"})
MAX_CURSOR_LENGTH = 2048


def _is_text(key: SortKey) -> bool:
    return key.param in ("_id", "_lastUpdated") or key.column in _TEXT


def encode_cursor(key: Sequence[Any], backward: bool) -> str:
    raw = orjson.dumps(["p" if backward else "n", list(key)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(
    token: str | None, sort: Sequence[SortKey]
) -> tuple[tuple[Any, ...] | None, bool]:
    """(keyset position, backward) of a cursor; (None, False) for the first page."""
    if token is None:
        return None, False
    invalid = BadRequest("invalid paging cursor: start the search again")
    if len(token) > MAX_CURSOR_LENGTH:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        direction, key = orjson.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise invalid from None
    if direction not in ("n", "p") or not isinstance(key, list) or len(key) != len(sort) + 1:
        raise invalid
    for value, spec in zip(key, [*sort, SortKey("_id")], strict=True):
        if _is_text(spec):
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise invalid
    numbers = [float(v) if not isinstance(v, str) else v for v in key]
    return tuple(numbers), direction == "p"
