"""Blind indexes: searchable, keyed hashes of identifying search values.

Names, identifiers, phone numbers, e-mail addresses, addresses and birth dates are never
stored in clear for search. The store keeps `HMAC-SHA256(index key, ...)` truncated to
128 bits (32 hex characters); a query hashes its value the same way and compares tokens.
The key comes from `KeyRing.blind_index_key()` and is not stored beside the data, so a
stolen database alone does not allow a dictionary attack on the tokens.

Every token is domain-separated by kind (token / prefix / exact) and by search parameter
name, with length-prefixed fields, so that equal values in different parameters (a family
name and a city called "Paris") give unrelated tokens, and no two field lists encode alike.

Kinds:

- `blind_token(key, param, system, value)`: FHIR token search (identifier, telecom). Index
  both `system=<system>` and `system=None` ("any system") so that `identifier=123` and
  `identifier=http://x|123` both work; `system=""` is FHIR's `|123` (no system).
  Values are not normalized: FHIR token matching is exact.
- `blind_prefixes(key, param, normalized, max_len)`: FHIR's default string search is
  case- and accent-insensitive *starts-with*. The index stores one token per prefix of
  the normalized value, of length 1 .. min(len, max_len). A query longer than `max_len`
  is looked up by its first `max_len` characters and the candidates must be re-checked
  after decryption (`blind_prefix_query` says when). `:exact` (case- and
  accent-sensitive, whole value) looks up the value's prefix tokens and compares the
  decrypted values as written (crypto/blind_index.py).
- `blind_exact(key, param, raw)`: a whole value as written. Search does not use it; the
  store keeps it for family names, given names and address parts only, which the
  snooping detector matches staff and patients on (crypto/blind_index.py, WHOLE_VALUES).

What the prefix index leaks to someone who holds the database but not the key:

- equality: two rows with the same first k characters share the k-th token, so an
  attacker sees which patients share a name, and how similar names are (the length of
  their common prefix);
- length: a value has min(len, max_len) prefix tokens, so short names are visible as
  short;
- frequency: the one-character tokens take only a few dozen values, and their frequency
  across a clinic follows the frequency of initials in the population; combined with
  equality, an attacker with a table of common names can guess common names with some
  success (a letter-by-letter frequency analysis). It cannot confirm a guess without the
  key.

A smaller `max_len` leaks less (fewer, shorter prefixes) at the cost of more re-checks
after decryption; whole-value tokens leak equality only. Store prefix tokens of one
resource unordered (a set), never in prefix order, or the length leak becomes trivial to
read.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

from phivault.crypto import primitives
from phivault.crypto.primitives import PrekeyedHmac

__all__ = [
    "DEFAULT_PREFIX_LEN",
    "TOKEN_BYTES",
    "BlindKey",
    "PrefixQuery",
    "blind_exact",
    "blind_prefix_query",
    "blind_prefixes",
    "blind_token",
    "normalize_string",
]

DEFAULT_PREFIX_LEN = 12
# 128 bits: collisions between distinct values stay negligible for any clinic (birthday
# bound ~2**64); shortening this would make unrelated values match each other's searches.
TOKEN_BYTES = 16

# Changing this domain (or the field encoding) changes every token: existing indexes
# would silently stop matching until rebuilt.
_DOMAIN = b"phivault/blind/v1"
_NONE = b"\xff\xff\xff\xff"  # length marker meaning "no value", distinct from ""


class PrefixQuery(NamedTuple):
    token: str
    needs_recheck: bool
    """True when the query was longer than the indexed prefixes: the token selects a
    superset, and the caller must compare the decrypted values."""


def normalize_string(s: str) -> str:
    """FHIR default string matching: case-folded, accents removed, whitespace collapsed.

    "  José   MÜLLER " -> "jose muller". Idempotent.
    """
    if s.isascii():
        # The same result, sooner: ASCII has no decompositions and no combining marks,
        # and its case folding is lower().
        return " ".join(s.lower().split())
    text = unicodedata.normalize("NFKD", s).casefold()
    # Case folding can produce new decomposable characters; decompose again before
    # dropping combining marks, or some accented letters would keep their accent.
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.split())


def _encode(*fields: str | None) -> bytes:
    out = bytearray(_DOMAIN)
    for f in fields:
        if f is None:
            out += _NONE
        else:
            data = f.encode("utf-8")
            out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def _token(key: bytes, *fields: str | None) -> str:
    return primitives.hmac_sha256(key, _encode(*fields))[:TOKEN_BYTES].hex()


def blind_token(key: bytes, param: str, system: str | None, value: str) -> str:
    """Token for a FHIR token search value; `system=None` means "any system"."""
    return _token(key, "token", param, system, value)


def blind_exact(key: bytes, param: str, raw: str) -> str:
    """Token of a whole value as written (not normalized)."""
    return _token(key, "exact", param, raw)


def blind_prefixes(
    key: bytes, param: str, normalized: str, max_len: int = DEFAULT_PREFIX_LEN
) -> list[str]:
    """Tokens of every prefix (length 1 .. min(len, max_len)) of a string value.

    The value is (re)normalized here, so passing a raw value is safe too.
    """
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    value = normalize_string(normalized)
    # The same bytes as _token(key, "prefix", param, value[:n]), with the fields before
    # the prefix encoded once per value rather than once per prefix.
    head = _encode("prefix", param)
    out = []
    for n in range(1, min(len(value), max_len) + 1):
        data = value[:n].encode("utf-8")
        message = head + len(data).to_bytes(4, "big") + data
        out.append(primitives.hmac_sha256(key, message)[:TOKEN_BYTES].hex())
    return out


def _field(text: str) -> bytes:
    """One field of `_encode`: its UTF-8 length in 4 bytes, then its bytes."""
    data = text.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


# `_field`'s length prefixes of 0 .. 255 bytes, made once (a value's prefix tokens).
_LENGTHS = tuple(n.to_bytes(4, "big") for n in range(256))


class BlindKey:
    """The functions above under one key, for the write path: the same tokens, computed
    with the key's HMAC pads and each (kind, param) head hashed once instead of once per
    token, and a value's prefixes in one loop. A Patient is ~80 tokens, so this is most of
    the cost of blinding it."""

    __slots__ = ("_heads", "_mac")

    def __init__(self, key: bytes) -> None:
        self._mac = PrekeyedHmac(key).extended(_DOMAIN)
        self._heads: dict[tuple[str, str], PrekeyedHmac] = {}

    def _head(self, kind: str, param: str) -> PrekeyedHmac:
        head = self._heads.get((kind, param))
        if head is None:
            head = self._mac.extended(_encode(kind, param)[len(_DOMAIN) :])
            self._heads[(kind, param)] = head
        return head

    def token(self, param: str, system: str | None, value: str) -> str:
        """= blind_token(key, param, system, value)."""
        rest = (_NONE if system is None else _field(system)) + _field(value)
        return self._head("token", param).digest(rest)[:TOKEN_BYTES].hex()

    def exact(self, param: str, raw: str) -> str:
        """= blind_exact(key, param, raw)."""
        return self._head("exact", param).digest(_field(raw))[:TOKEN_BYTES].hex()

    def longest_prefix(self, param: str, normalized: str, max_len: int = DEFAULT_PREFIX_LEN) -> str:
        """= blind_prefixes(key, param, normalized, max_len)[-1] for a non-empty value."""
        return self._head("prefix", param).digest(_field(normalized[:max_len]))[:TOKEN_BYTES].hex()

    def prefixes(self, param: str, normalized: str, max_len: int = DEFAULT_PREFIX_LEN) -> list[str]:
        """= blind_prefixes(key, param, normalized, max_len) for a normalized value."""
        if max_len < 1:
            raise ValueError("max_len must be at least 1")
        value = normalized[:max_len]
        data = value.encode("utf-8")
        if len(data) == len(value) and len(data) < len(_LENGTHS):
            # ASCII: the prefix of n characters is the first n bytes.
            msgs = [_LENGTHS[n] + data[:n] for n in range(1, len(data) + 1)]
        else:
            msgs = [_field(value[:n]) for n in range(1, len(value) + 1)]
        return [mac[:TOKEN_BYTES].hex() for mac in self._head("prefix", param).digests(msgs)]


def blind_prefix_query(
    key: bytes, param: str, query: str, max_len: int = DEFAULT_PREFIX_LEN
) -> PrefixQuery:
    """The one token to look up for a starts-with query (use the index's `max_len`)."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    value = normalize_string(query)
    if not value:
        raise ValueError("an empty string search matches everything; handle it before")
    return PrefixQuery(_token(key, "prefix", param, value[:max_len]), len(value) > max_len)
