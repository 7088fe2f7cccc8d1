"""Where the test suite finds the data shared by the project (FHIR definitions, vectors)."""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    """The shared data directory: `PHIVAULT_SHARED`, else `shared/` beside the repository."""
    configured = os.environ.get("PHIVAULT_SHARED")
    if configured:
        return Path(configured).resolve()
    return (Path(__file__).resolve().parents[1] / ".." / "shared").resolve()
