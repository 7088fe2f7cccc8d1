"""A serving process's start-up heap, set aside from the garbage collector.

By the time a server takes requests it holds a large heap that lives as long as it does:
every module, the FHIR model classes, the search registry, the key and access caches.
CPython's full collections (generation 2) walk all of it each time, holding the GIL: in
a server creating Patients, about one full pass per thousand requests, each lasting many
requests' worth of time, during which no request moves. Freezing the start-up heap (after
one collection, so that its garbage is not kept) leaves those passes only what requests
allocate. Cycles among frozen objects are never collected; the start-up heap's live as
long as the process anyway.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then move every object now alive to the permanent generation."""
    gc.collect()
    gc.freeze()
