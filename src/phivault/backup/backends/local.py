"""A repository in a local directory (a mounted disk, NAS share or USB drive).

Objects are files that are never rewritten or deleted by the server: each is written to
`tmp/`, flushed, made read-only (0444) and then hard-linked to its final name, which fails
if the name exists (create-no-replace, atomic). A crash leaves at worst a stray file in
`tmp/`. Real protection from a compromised server needs the directory to be somewhere the
server's OS user cannot delete from (another host, an append-only mount, a rotated disk):
docs/BACKUP.md says how.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from phivault.backup.backends.base import check_name
from phivault.errors import AppendOnlyViolation, BackupError

READ_ONLY = 0o444


class LocalBackend:
    """AppendOnlyBackend over a directory."""

    operator = False

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self._dirty: set[Path] = set()

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def create(self, name: str, data: bytes, *, retain: bool = True) -> bool:
        final = self._path(name)
        if final.exists():
            return False
        tmp_dir = self.root / "tmp"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = tmp_dir / secrets.token_hex(16)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, READ_ONLY)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                # link() never replaces: an existing name raises, and the object stays as is.
                os.link(tmp, final)
                created = True
            except FileExistsError:
                created = False
            finally:
                os.unlink(tmp)
        except OSError as exc:
            raise BackupError("cannot write to the backup repository") from exc
        if created:
            self._dirty.add(final.parent)
        return created

    def read(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackupError("cannot read the backup repository") from exc

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        if not base.is_dir():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for file in files:
                yield file if rel == "." else f"{rel}/{file}"

    def protect(self, names: Iterable[str], until: datetime) -> None:
        return None  # files are never deleted by this backend

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for directory in dirty:
            try:
                fd = os.open(directory, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def delete(self, name: str) -> bool:
        raise AppendOnlyViolation()

    def close(self) -> None:
        self.flush()


class LocalOperatorBackend(LocalBackend):
    """The same directory opened by `backup prune`: may remove objects."""

    operator = True

    def delete(self, name: str) -> bool:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            return True
        except OSError as exc:
            raise BackupError("cannot delete from the backup repository") from exc
        self._dirty.add(self._path(name).parent)
        return True
