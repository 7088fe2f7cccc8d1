"""Audit pseudonyms: the keyed name under which the audit log records a patient.

The log never holds a patient's id. An entry names the patient compartment by
`HMAC-SHA256(pseudonym key, "Patient/<id>")`, hex, truncated to 128 bits: stable, so an
auditor can follow one patient through the log with the key, and meaningless without it.
The key is `KeyRing.audit_pseudonym_key()`.

Every audited access to a patient's record computes one, and the detectors compute them
for every patient they follow. `Pseudonyms` keeps the key's HMAC pads hashed once
(`PrekeyedHmac`: `hmac.digest` prepares the key again on every call) and remembers the
pseudonyms of recently named compartments, in a bounded cache: a pseudonym is not key
material, and the process holds the key anyway.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from phivault.crypto.primitives import PrekeyedHmac

__all__ = ["PSEUDONYM_HEX_LEN", "Pseudonyms"]

PSEUDONYM_HEX_LEN = 32  # 128 bits
DEFAULT_CACHE_SIZE = 16_384  # compartments remembered (about 2 MB)


class Pseudonyms:
    """`pseudonyms("Patient/123")` is that compartment's pseudonym under `key`."""

    __slots__ = ("_cached",)

    def __init__(self, key: bytes, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        mac = PrekeyedHmac(key)

        @functools.lru_cache(maxsize=cache_size)
        def pseudonym(compartment: str) -> str:
            return mac.digest(compartment.encode()).hex()[:PSEUDONYM_HEX_LEN]

        self._cached: Callable[[str], str] = pseudonym

    def __call__(self, compartment: str) -> str:
        return self._cached(compartment)
