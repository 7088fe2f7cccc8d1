"""The key ring's cache keeps a cipher only beside the key it was made from."""

from __future__ import annotations

import threading

import pytest

from phivault.crypto.body import BodyCipher
from phivault.crypto.key_cache import KeyCache

K1, K2 = bytes(range(32)), bytes(range(1, 33))


def _cache(size: int = 4) -> KeyCache:
    return KeyCache(size, threading.RLock())


def _with_ciphers(cache: KeyCache, rows: list[str]) -> KeyCache:
    """Each row's key cached (K1), with its cipher kept."""
    for row in rows:
        cache.remember(row, K1, unconfirmed=None)
        cache.keep_cipher(row, BodyCipher(K1, row, 1))
    return cache


def test_a_cipher_is_kept_only_for_the_cached_key() -> None:
    cache = _cache()
    cache.keep_cipher("patient:a", BodyCipher(K1, "patient:a", 1))
    assert cache.cipher("patient:a") is None  # no key cached: nothing kept
    cache.remember("patient:a", K1, unconfirmed=None)
    cache.keep_cipher("patient:a", BodyCipher(bytes(K2), "patient:a", 1))
    assert cache.cipher("patient:a") is None  # made from another key
    kept = BodyCipher(K1, "patient:a", 1)
    cache.keep_cipher("patient:a", kept)
    assert cache.cipher("patient:a") is kept
    cache.remember("patient:a", K1, unconfirmed=b"blob")  # the same key again: kept
    assert cache.cipher("patient:a") is kept


def test_a_cipher_goes_with_its_key() -> None:
    cache = _with_ciphers(_cache(size=2), ["patient:a", "patient:b"])
    cache.remember("patient:a", K2, unconfirmed=None)  # replaced by another key
    assert cache.cipher("patient:a") is None
    cache.forget("patient:b")
    assert cache.cipher("patient:b") is None
    cache.keep_cipher("patient:a", BodyCipher(K2, "patient:a", 1))
    cache.remember("patient:c", K1, unconfirmed=None)
    cache.remember("patient:d", K1, unconfirmed=None)  # evicts patient:a
    assert "patient:a" not in cache and cache.cipher("patient:a") is None
    cache.keep_cipher("patient:d", BodyCipher(K1, "patient:d", 1))
    cache.clear()
    assert cache.cipher("patient:d") is None


def test_a_cipher_hit_counts_as_a_use_of_the_key() -> None:
    cache = _with_ciphers(_cache(size=2), ["patient:a", "patient:b"])
    assert cache.cipher("patient:a") is not None
    cache.remember("patient:c", K1, unconfirmed=None)  # evicts b, the least recently used
    assert "patient:a" in cache and "patient:b" not in cache


def test_ciphers_are_kept_for_the_most_recently_used_keys_only() -> None:
    cache = _with_ciphers(
        KeyCache(8, threading.RLock(), ciphers=2), ["patient:a", "patient:b", "patient:c"]
    )
    assert cache.cipher("patient:a") is None  # the oldest cipher went; its key stays
    assert "patient:a" in cache
    assert cache.cipher("patient:b") is not None  # b is now newer than c
    cache.keep_cipher("patient:a", BodyCipher(K1, "patient:a", 1))
    assert cache.cipher("patient:c") is None
    assert cache.cipher("patient:a") is not None and cache.cipher("patient:b") is not None
    none = KeyCache(8, threading.RLock(), ciphers=0)
    none.remember("patient:a", K1, unconfirmed=None)
    none.keep_cipher("patient:a", BodyCipher(K1, "patient:a", 1))
    assert none.cipher("patient:a") is None
    with pytest.raises(ValueError):
        KeyCache(8, threading.RLock(), ciphers=-1)
