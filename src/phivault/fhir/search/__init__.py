"""FHIR R4 search parameters: the registry (registry.py) and index extraction (extract.py).

Pure code, no storage: the store persists the `IndexEntry` rows that `extract` returns and
the query layer reads the `Registry` and normalises arguments with index.py's helpers.
"""

from __future__ import annotations

from phivault.fhir.search.extract import extract
from phivault.fhir.search.index import IndexEntry
from phivault.fhir.search.registry import Registry, SearchParam, default_registry

__all__ = ["IndexEntry", "Registry", "SearchParam", "default_registry", "extract"]
