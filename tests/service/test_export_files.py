"""Export files at rest: sealed chunk by chunk, and any cut, swap or move is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from phivault.errors import DecryptionError
from phivault.service import export_files
from phivault.service.export_files import SealedFileWriter, read_sealed_file
from phivault.vault import Vault

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def write(vault: Vault, path: Path, identity: str, data: bytes) -> None:
    writer = SealedFileWriter(vault.service.codec, path, identity)
    writer.write(data)
    writer.close()


def read(vault: Vault, path: Path, identity: str) -> bytes:
    return b"".join(read_sealed_file(vault.service.codec, path, identity))


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_files, "CHUNK_BYTES", 64)


def test_round_trip_and_no_plaintext(vault: Vault, tmp_path: Path, small_chunks: None) -> None:
    data = b"".join(b'{"family":"Nakamura","n":%d}\n' % i for i in range(50))
    path = tmp_path / "Patient.ndjson.enc"
    write(vault, path, "job/Patient.ndjson", data)
    assert b"Nakamura" not in path.read_bytes()
    assert read(vault, path, "job/Patient.ndjson") == data
    empty = tmp_path / "Empty.ndjson.enc"
    write(vault, empty, "job/Empty.ndjson", b"")
    assert read(vault, empty, "job/Empty.ndjson") == b""


def _blobs(raw: bytes) -> list[bytes]:
    out, pos = [], len(export_files.MAGIC)
    while pos < len(raw):
        size = int.from_bytes(raw[pos : pos + 4], "big")
        out.append(raw[pos : pos + 4 + size])
        pos += 4 + size
    return out


def test_truncation_reordering_and_moving_fail(
    vault: Vault, tmp_path: Path, small_chunks: None
) -> None:
    path = tmp_path / "Observation.ndjson.enc"
    write(vault, path, "job/Observation.ndjson", b"x" * 300)
    raw = path.read_bytes()
    blobs = _blobs(raw)
    assert len(blobs) >= 3
    cut = tmp_path / "cut.enc"
    cut.write_bytes(export_files.MAGIC + b"".join(blobs[:-1]))
    swapped = tmp_path / "swapped.enc"
    swapped.write_bytes(export_files.MAGIC + blobs[1] + blobs[0] + b"".join(blobs[2:]))
    flipped = tmp_path / "flipped.enc"
    flipped.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    for bad in (cut, swapped, flipped):
        with pytest.raises(DecryptionError):
            read(vault, bad, "job/Observation.ndjson")
    with pytest.raises(DecryptionError):  # the same file presented as another one
        read(vault, path, "job/Patient.ndjson")
