"""Bulk export output files, encrypted at rest.

An export file holds PHI, so it is never written in clear: the NDJSON is cut into chunks
and each chunk is sealed by the body codec (AES-256-GCM under the system data key; the
codec is the only seam to the key ring). File layout::

    b"PVX1" || (len(blob) as 4 bytes big-endian || blob)*

Each chunk's associated data names the job, the file and the chunk's position, and the
last chunk is sealed under a distinct "end" identity. So a chunk moved to another file or
position, a file cut short, or chunks swapped between jobs all fail to open, and every
such failure is the codec's one opaque DecryptionError.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from phivault.crypto.codec import BodyCodec
from phivault.errors import DecryptionError

MAGIC = b"PVX1"
CHUNK_BYTES = 1 << 20
MAX_BLOB_BYTES = CHUNK_BYTES + 4096  # a chunk plus the codec's overhead, with room
# Not a FHIR resource type: the associated data of an export chunk can never equal that
# of a stored resource version ("Type/id/version").
_EXPORT_RTYPE = "$export"


class SealedFileWriter:
    """Write one export file chunk by chunk; `close()` seals the last chunk."""

    def __init__(self, codec: BodyCodec, path: Path, identity: str) -> None:
        self._codec = codec
        self._identity = identity
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._handle: BinaryIO = os.fdopen(fd, "wb")
        self._handle.write(MAGIC)
        self._buffer = bytearray()
        self._index = 0
        self.plaintext_bytes = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.plaintext_bytes += len(data)
        while len(self._buffer) >= CHUNK_BYTES:
            chunk = bytes(self._buffer[:CHUNK_BYTES])
            del self._buffer[:CHUNK_BYTES]
            self._seal(chunk, final=False)

    def close(self) -> None:
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()

    def abort(self) -> None:
        self._buffer.clear()
        self._handle.close()

    def _seal(self, plaintext: bytes, *, final: bool) -> None:
        blob = self._codec.seal(
            _EXPORT_RTYPE, _chunk_identity(self._identity, final), self._index, None, plaintext
        )
        self._handle.write(len(blob).to_bytes(4, "big") + blob)
        self._index += 1


def read_sealed_file(codec: BodyCodec, path: Path, identity: str) -> Iterator[bytes]:
    """The plaintext of an export file, chunk by chunk, checked as it is read."""
    try:
        handle = path.open("rb")
    except OSError:
        raise DecryptionError() from None
    with handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise DecryptionError()
        index = 0
        pending = _next_blob(handle)
        if pending is None:
            raise DecryptionError()  # not even the final chunk: cut short
        while pending is not None:
            following = _next_blob(handle)
            final = following is None
            yield codec.open(_EXPORT_RTYPE, _chunk_identity(identity, final), index, None, pending)
            pending = following
            index += 1


def _next_blob(handle: BinaryIO) -> bytes | None:
    head = handle.read(4)
    if not head:
        return None
    if len(head) != 4:
        raise DecryptionError()
    size = int.from_bytes(head, "big")
    if size > MAX_BLOB_BYTES:
        raise DecryptionError()
    blob = handle.read(size)
    if len(blob) != size:
        raise DecryptionError()
    return blob


def _chunk_identity(identity: str, final: bool) -> str:
    return f"{identity}/end" if final else identity
