"""Content-defined chunking: deterministic, bounded, and resistant to shifted content."""

from __future__ import annotations

import os
import random

import pytest

from phivault.backup.chunker import Chunker, ChunkerParams

PARAMS = ChunkerParams(16 * 1024)


def data(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def test_same_input_same_chunks() -> None:
    blob = data(2_000_000)
    first = Chunker(PARAMS, seed=b"repo").split(blob)
    second = Chunker(PARAMS, seed=b"repo").split(blob)
    assert first == second
    assert b"".join(first) == blob
    assert len(first) > 20


def test_sizes_stay_within_bounds() -> None:
    sizes = [len(c) for c in Chunker(PARAMS, seed=b"x").split(data(3_000_000, 2))]
    assert all(PARAMS.min_size <= s <= PARAMS.max_size for s in sizes[:-1])
    average = sum(sizes) / len(sizes)
    assert PARAMS.avg_size * 0.6 < average < PARAMS.avg_size * 2


def test_the_seed_changes_the_cut_points() -> None:
    blob = data(1_000_000, 3)
    a = Chunker(PARAMS, seed=b"one").split(blob)
    b = Chunker(PARAMS, seed=b"two").split(blob)
    assert [len(c) for c in a] != [len(c) for c in b]


@pytest.mark.parametrize("where", ["front", "middle"])
def test_an_insertion_changes_only_nearby_chunks(where: str) -> None:
    blob = data(3_000_000, 4)
    at = 0 if where == "front" else len(blob) // 2
    shifted = blob[:at] + os.urandom(777) + blob[at:]
    chunker = Chunker(PARAMS, seed=b"s")
    before, after = chunker.split(blob), chunker.split(shifted)
    new = set(after) - set(before)
    assert len(new) <= 3  # the chunk holding the insertion, maybe one neighbour
    assert len(set(before) & set(after)) >= len(before) - 3


def test_low_entropy_data_is_cut_at_the_maximum() -> None:
    chunks = Chunker(PARAMS).split(b"\x00" * 500_000)
    assert b"".join(chunks) == b"\x00" * 500_000
    assert all(len(c) == PARAMS.max_size for c in chunks[:-1])


def test_empty_and_tiny_inputs() -> None:
    chunker = Chunker(PARAMS)
    assert chunker.split(b"") == []
    assert chunker.split(b"abc") == [b"abc"]


def test_the_average_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        ChunkerParams(100_000)
    with pytest.raises(ValueError):
        ChunkerParams(1024)


PAGE = 4096


def paged(pages: int, seed: int = 5) -> bytes:
    return data(pages * PAGE, seed)


def test_aligned_chunks_cut_only_at_page_boundaries() -> None:
    blob = paged(800) + b"tail"  # a short last piece stays whole
    chunks = Chunker(PARAMS, seed=b"p").split(blob, PAGE)
    assert b"".join(chunks) == blob
    assert all(len(c) % PAGE == 0 for c in chunks[:-1])
    assert all(PARAMS.min_size <= len(c) <= PARAMS.max_size for c in chunks[:-1])
    assert 0.5 * PARAMS.avg_size < len(blob) / len(chunks) < 2 * PARAMS.avg_size


def test_aligned_chunks_are_deterministic_and_keyed() -> None:
    blob = paged(800, 6)
    one = Chunker(PARAMS, seed=b"one")
    assert one.split(blob, PAGE) == one.split(blob, PAGE)
    two = Chunker(PARAMS, seed=b"two")
    assert [len(c) for c in one.split(blob, PAGE)] != [len(c) for c in two.split(blob, PAGE)]


def test_a_rewritten_page_changes_only_its_chunk() -> None:
    blob = bytearray(paged(1200, 7))
    chunker = Chunker(PARAMS, seed=b"s")
    before = chunker.split(bytes(blob), PAGE)
    at = 600 * PAGE + 100  # SQLite rewrites pages in place: nothing shifts
    blob[at : at + 50] = os.urandom(50)
    after = chunker.split(bytes(blob), PAGE)
    assert len(set(after) - set(before)) <= 2  # its chunk, maybe the next if a cut moved
    assert len(set(before) & set(after)) >= len(before) - 2


def test_aligned_low_entropy_pages_get_equal_chunks() -> None:
    blob = b"\x00" * (PARAMS.max_size * 3)
    chunks = Chunker(PARAMS).split(blob, PAGE)
    assert b"".join(chunks) == blob
    assert len({len(c) for c in chunks[:-1]}) == 1  # one window, one decision: dedups
    assert len(set(chunks[:-1])) == 1
