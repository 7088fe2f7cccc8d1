"""Content-defined chunking: cut points chosen by the content, so an insertion shifts only
the chunks around it and everything else deduplicates.

FastCDC (Xia et al., USENIX ATC 2016) with its gear hash and normalized chunking: no cut
before `min_size`, a stricter mask until the average size, a looser one after it, and a
hard cut at `max_size`. Evaluating a gear hash byte by byte is a Python loop (~6 MB/s), so
the scan runs in two stages:

1. Candidates, at C speed: every byte is mapped to a 2-bit symbol by a keyed table
   (`bytes.translate`) and a keyed needle of `PREFILTER_SYMBOLS` symbols is searched for
   (`bytes.find`); a position matches with probability 2**-(2 * PREFILTER_SYMBOLS) on
   varied data.
2. Confirmation: the 64-bit FastCDC gear hash of the 64 bytes that end at a candidate is
   computed and the position is a cut point when its masked top bits are zero (mask
   bits = log2(avg) - prefilter bits, +2 before the average size and -2 after it).

Both stages depend only on the bytes just before a position, never on where the current
chunk started, so a cut point survives any shift of the data in front of it. Tables,
needle and gear values come from one seed; a repository derives its seed from a key, so
chunk sizes do not fingerprint known files (borg keys its buzhash table the same way).

A file made of fixed-size pages (a SQLite database) is chunked with `align` = its page
size: its content never shifts by less than a page (SQLite rewrites pages in place), so
only page boundaries are candidates, and one is a cut point when a keyed hash (BLAKE2b,
keyed from the same seed) of the `GEAR_WINDOW` bytes before it has its masked top bits
zero, with the same normalization and size bounds (in whole pages). That is one small
hash per page instead of a scan of every byte: the scan cost most of a full backup.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

KIB = 1024
MIB = 1024 * KIB
DEFAULT_AVG_SIZE = 1 * MIB
GEAR_WINDOW = 64
PREFILTER_SYMBOLS = 7  # 14 bits: few enough candidates that the Python loop costs nothing
READ_SIZE = 8 * MIB
PAGE_READ = 256 * KIB  # aligned mode reads this much at a time
_MASK64 = (1 << 64) - 1
_NORMALIZATION = 2  # FastCDC "level 2": mask bits +-2 around the average size


def _stream(seed: bytes, label: bytes, count: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < count:
        out += hashlib.sha256(seed + label + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:count])


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """Sizes in bytes; `avg_size` must be a power of two (min = avg/4, max = avg*4)."""

    avg_size: int = DEFAULT_AVG_SIZE

    def __post_init__(self) -> None:
        if self.avg_size < 4 * KIB or self.avg_size & (self.avg_size - 1):
            raise ValueError("the average chunk size must be a power of two of at least 4 KiB")

    @property
    def min_size(self) -> int:
        return self.avg_size // 4

    @property
    def max_size(self) -> int:
        return self.avg_size * 4


class Chunker:
    """Splits a byte stream into content-defined chunks. Same seed and params, same cuts."""

    def __init__(self, params: ChunkerParams | None = None, seed: bytes = b"") -> None:
        self.params = params or ChunkerParams()
        bits = int(math.log2(self.params.avg_size))
        symbols = min(PREFILTER_SYMBOLS, (bits - 2 * _NORMALIZATION - 2) // 2)
        gear_bits = bits - 2 * symbols
        key = hashlib.sha256(b"phivault/chunker/v1\x00" + seed).digest()
        raw = _stream(key, b"symbols", 256)
        self._table = bytes(b & 3 for b in raw)
        self._needle = bytes(b & 3 for b in _stream(key, b"needle", symbols))
        gear_raw = _stream(key, b"gear", 256 * 8)
        self._gear = [int.from_bytes(gear_raw[i : i + 8], "big") for i in range(0, 2048, 8)]
        # Top bits of the hash: they depend on all 64 bytes of the window.
        self._mask_strict = _top_mask(gear_bits + _NORMALIZATION)
        self._mask_loose = _top_mask(max(gear_bits - _NORMALIZATION, 0))
        self._page_hash = hashlib.blake2b(key=_stream(key, b"pages", 32), digest_size=8)

    def _confirmed(self, window: bytes, size: int) -> bool:
        h = 0
        gear = self._gear
        for byte in window:
            h = ((h << 1) + gear[byte]) & _MASK64
        mask = self._mask_strict if size < self.params.avg_size else self._mask_loose
        return h & mask == 0

    def _cut(self, buf: bytes, start: int, end: int) -> int | None:
        """First cut point in buf[start:end] for a chunk starting at `start`, or None."""
        params = self.params
        needle = self._needle
        lo = max(start + params.min_size, GEAR_WINDOW) - len(needle)
        hi = min(end, start + params.max_size)
        step = 256 * KIB
        while lo <= hi - len(needle):
            piece_end = min(hi, lo + step + len(needle))
            symbols = buf[lo:piece_end].translate(self._table)
            at = symbols.find(needle)
            while at >= 0:
                cut = lo + at + len(needle)
                if self._confirmed(buf[cut - GEAR_WINDOW : cut], cut - start):
                    return cut
                at = symbols.find(needle, at + 1)
            lo = piece_end - len(needle) + 1
        return None

    def chunks(self, stream: BinaryIO, align: int = 1) -> Iterator[bytes]:
        """Yield the chunks of `stream` in order (an empty stream yields nothing); with
        `align` > 1, cut only at multiples of `align` bytes (a page-structured file)."""
        if align > 1:
            yield from self._page_chunks(stream, align)
            return
        max_size = self.params.max_size
        buf = b""
        pos = 0
        eof = False
        while True:
            if not eof and len(buf) - pos < max_size:
                more = stream.read(max(READ_SIZE, max_size))
                eof = not more
                buf = buf[pos:] + more
                pos = 0
                continue
            if pos >= len(buf):
                return
            cut = self._cut(buf, pos, len(buf))
            if cut is None:
                cut = min(len(buf), pos + max_size)
            yield buf[pos:cut]
            pos = cut

    def _page_chunks(self, stream: BinaryIO, align: int) -> Iterator[bytes]:
        params = self.params
        min_size = max(align, params.min_size // align * align)
        max_size = max(min_size, params.max_size // align * align)
        bits = max(params.avg_size // align, 1).bit_length() - 1  # log2(average in pages)
        strict = _top_mask(bits + _NORMALIZATION)
        loose = _top_mask(max(bits - _NORMALIZATION, 0))
        avg = params.avg_size
        keyed = self._page_hash
        window = min(GEAR_WINDOW, align)
        step = max(align, PAGE_READ // align * align)
        parts: list[memoryview] = []  # the current chunk's pieces, joined once (one copy)
        size = 0
        leftover = memoryview(b"")
        while True:
            piece = leftover if leftover else memoryview(stream.read(step))
            if not piece:
                if parts:
                    yield b"".join(parts)
                return
            # Boundaries inside `piece` (chunks start page-aligned: at multiples of
            # `align` from the piece's start); a short last page is no boundary.
            leftover = memoryview(b"")
            for at in range(max(align, min_size - size), len(piece) + 1, align):
                total = size + at
                if total < max_size:
                    hashed = keyed.copy()
                    hashed.update(piece[at - window : at])
                    mask = strict if total < avg else loose
                    if int.from_bytes(hashed.digest(), "big") & mask:
                        continue
                parts.append(piece[:at])
                leftover = piece[at:]
                yield b"".join(parts)
                parts, size = [], 0
                break
            else:
                parts.append(piece)
                size += len(piece)

    def split(self, data: bytes, align: int = 1) -> list[bytes]:
        import io

        return list(self.chunks(io.BytesIO(data), align))


def _top_mask(bits: int) -> int:
    return ((1 << bits) - 1) << (64 - bits) if bits else 0
