"""The start-up heap is frozen out of the collector's way, its garbage collected first."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from phivault.api.heap import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite runs with an ordinary heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_live_objects_are_frozen_and_garbage_is_not_kept(unfrozen: None) -> None:
    kept = Node()
    garbage = Node()
    garbage.other = garbage  # a cycle: only the collector frees it
    dead = weakref.ref(garbage)
    del garbage
    assert dead() is not None
    freeze_startup_heap()
    assert dead() is None  # collected before the freeze, not kept for ever
    assert gc.get_freeze_count() > 0
    # a full collection no longer walks what was alive at start-up
    tracked = {id(o) for o in gc.get_objects()}
    assert id(kept) not in tracked
    later = Node()
    assert id(later) in {id(o) for o in gc.get_objects()}
