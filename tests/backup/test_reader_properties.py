"""Property tests: the backup readers take tampered or random bytes (repository config,
snapshot manifests, chunks) and answer with a clear backup error, never an unexpected
exception; a tampered manifest or chunk never opens.

The repository is a real one made by a real backup of a small clinic; tampering is done
the way an attacker with write access to the storage would: by rewriting the objects'
bytes on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from phivault.backup.backends.local import LocalBackend
from phivault.backup.repository import (
    CHUNKS,
    CONFIG_NAME,
    SNAPSHOTS,
    RepoConfig,
    Repository,
    SnapshotHeader,
)
from phivault.errors import BackupError, BackupIntegrityError
from tests.backup.conftest import Clinic

BUDGET = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FLIPS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), min_size=1, max_size=4)
CUT = st.none() | st.integers(0, 4096)


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in flips:
        if out:
            out[pos % len(out)] ^= value
    return bytes(out[:cut] if cut is not None else out)


class Copy:
    """A copy of the repository directory whose objects the test rewrites."""

    def __init__(self, clinic: Clinic, where: Path) -> None:
        shutil.copytree(clinic.repo_dir, where)
        self.root = where
        self.key = clinic.backup_key.private_key
        self.repo = Repository.open(LocalBackend(where), clinic.backup_key.repo_id)
        self.snapshot = self.repo.snapshot_ids()[0]
        self.manifest = self._file(SNAPSHOTS + self.snapshot).read_bytes()
        self.original = self.repo.read_manifest(self.snapshot, self.key)
        header = self.original[0]
        self.chunk = header.chunks[0]
        self.chunk_path = next(
            p for p in (where / CHUNKS).rglob("*") if p.is_file() and self.chunk in p.name
        )
        self.chunk_blob = self.chunk_path.read_bytes()

    def _file(self, name: str) -> Path:
        return self.root / name

    def write(self, path: Path, data: bytes) -> None:
        path.chmod(0o600)
        path.write_bytes(data)


@pytest.fixture
def copy(backed_up: Clinic, tmp_path: Path) -> Copy:
    return Copy(backed_up, tmp_path / "repo-copy")


def test_the_untampered_copy_opens(copy: Copy) -> None:
    header, body = copy.repo.read_manifest(copy.snapshot, copy.key)
    assert header.snapshot_id == copy.snapshot and body
    assert copy.repo.open_chunk(copy.key, copy.chunk)


@BUDGET
@given(FLIPS, CUT)
def test_tampered_manifests_never_open(
    copy: Copy, flips: list[tuple[int, int]], cut: int | None
) -> None:
    tampered = mutate(copy.manifest, flips, cut)
    copy.write(copy._file(SNAPSHOTS + copy.snapshot), tampered)
    try:
        opened = copy.repo.read_manifest(copy.snapshot, copy.key)
    except BackupIntegrityError:
        return
    finally:
        copy.write(copy._file(SNAPSHOTS + copy.snapshot), copy.manifest)
    # Bytes that still open must say exactly what the original says (e.g. base64's
    # ignored trailing bits of a signature): tampering never changes the content.
    assert opened == copy.original


@BUDGET
@given(FLIPS, CUT)
def test_tampered_chunks_never_open(
    copy: Copy, flips: list[tuple[int, int]], cut: int | None
) -> None:
    tampered = mutate(copy.chunk_blob, flips, cut)
    assume(tampered != copy.chunk_blob)  # two flips of one byte can cancel out
    with pytest.raises(BackupIntegrityError):
        copy.repo.open_chunk(copy.key, copy.chunk, tampered)


@BUDGET
@given(st.one_of(st.binary(max_size=600), st.builds(mutate, st.just(b""), FLIPS, CUT)))
def test_repository_config_reader_takes_any_bytes(raw: bytes) -> None:
    try:
        RepoConfig.from_bytes(raw)
    except BackupError:
        pass


@BUDGET
@given(FLIPS, CUT)
def test_tampered_repository_config(
    copy: Copy, flips: list[tuple[int, int]], cut: int | None
) -> None:
    original = copy._file(CONFIG_NAME).read_bytes()
    try:
        config = RepoConfig.from_bytes(mutate(original, flips, cut))
    except BackupError:
        return
    assert isinstance(config, RepoConfig)


JSON: Any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=15,
)


@BUDGET
@given(
    st.one_of(
        JSON,
        st.dictionaries(
            st.sampled_from(
                ["id", "repo_id", "time", "chunks", "body_sha256", "chain", "marks", "stats"]
            ),
            JSON,
        ),
    )
)
def test_snapshot_header_reader_refuses_cleanly(data: Any) -> None:
    try:
        SnapshotHeader.from_json(data)
    except (ValueError, KeyError, TypeError):
        pass  # the manifest reader turns these into BackupIntegrityError
