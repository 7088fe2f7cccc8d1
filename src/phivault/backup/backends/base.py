"""What a repository backend must do: add objects, read them, list them. Nothing else.

The server only ever holds an `AppendOnlyBackend`: it cannot replace or remove an object,
so a compromised server (or ransomware running as it) cannot destroy backups it wrote.
Removing objects is a separate capability, `OperatorBackend`, which only `backup prune`
asks for, with credentials the server never holds.

Object names are relative paths of lower-case hex, letters, digits, "-", "_", "." and
"/" (`config`, `chunks/ab/ab12...`, `snapshots/<id>`); backends map them to files or keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Protocol

from phivault.errors import BackupError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$")


def check_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name or len(name) > 200:
        raise BackupError("invalid repository object name")
    return name


class AppendOnlyBackend(Protocol):
    url: str
    operator: bool  # True only for the operator's (prune) access

    def create(self, name: str, data: bytes, *, retain: bool = True) -> bool:
        """Store a new object atomically; False (and nothing written) if `name` exists.

        Never replaces an existing object, whatever the caller asks. `retain=False`: no
        retention where the backend has one (key-sets: the operator must be able to
        delete them; backup/keysets.py)."""
        ...

    def read(self, name: str) -> bytes | None:
        """The object as first written, or None if it does not exist."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Names of the objects under `prefix` (a folder such as "chunks/")."""
        ...

    def protect(self, names: Iterable[str], until: datetime) -> None:
        """Make sure these objects cannot be deleted before `until` (no-op where the
        backend has no retention: a local directory is protected by never deleting)."""
        ...

    def flush(self) -> None:
        """Make every object created so far durable."""
        ...

    def close(self) -> None: ...


class OperatorBackend(AppendOnlyBackend, Protocol):
    """Adds deletion; opened only by `backup prune` with the operator's credentials."""

    def delete(self, name: str) -> bool:
        """Remove an object; False if its retention still forbids it (it is kept)."""
        ...
