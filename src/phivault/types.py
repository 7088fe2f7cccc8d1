"""Shared type aliases."""

from __future__ import annotations

from typing import Any, TypeAlias

JSON: TypeAlias = Any
Resource: TypeAlias = dict[str, Any]
"""A FHIR resource as parsed JSON (`resourceType`, `id`, `meta`, ...)."""
