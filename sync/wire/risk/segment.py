"""One immutable, sorted segment file of risk records with a key-prefix index, read through mmap.

Layout (little-endian): a 32-byte header (magic ``CPRSEG1\\0``, entry count u64, prefix bits u8),
then ``2**bits + 1`` u32 offsets (first record of each key prefix), then the 19-byte records
sorted by key. A cold lookup reads one index entry and one or two pages of records.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import sys
from pathlib import Path

import numpy as np

from sync.wire.errors import CheckpointError
from sync.wire.risk.records import RECORD, RECORD_BYTES, REMOVED, key_words
from sync.wire.risk.types import RiskStatus

MAGIC = b"CPRSEG1\x00"
HEADER = struct.Struct("<8sQB15x")
#: aim for about this many records per prefix bucket (index cost ~4/TARGET bytes per entry)
BUCKET_TARGET = 32
MAX_BITS = 24
_LINEAR_SCAN = 96
#: statuses a base segment may hold; overlays may also hold removals
LIVE_STATUSES = frozenset(int(s) for s in RiskStatus)
OVERLAY_STATUSES = LIVE_STATUSES | {REMOVED}


class SegmentError(CheckpointError, ValueError):
    """A segment file is missing, truncated or does not match its checksum."""


def prefix_bits(entries: int) -> int:
    """Index width for a segment of ``entries`` records."""
    bits = 0
    while bits < MAX_BITS and (entries >> bits) > BUCKET_TARGET:
        bits += 1
    return bits


#: the first 8 key bytes of each record, as a big-endian word, read in place (no copy of the keys)
_FIRST_WORD = np.dtype({"names": ["word"], "formats": [">u8"], "offsets": [0], "itemsize": RECORD.itemsize})
_INDEX_CHUNK = 1 << 20


def _index(recs: np.ndarray, bits: int) -> np.ndarray:
    """Where each ``bits``-bit key prefix starts (and the end): counted a chunk at a time, so a
    national list is indexed without a copy of its keys (the publisher's memory goal)."""
    counts = np.zeros(1 << bits, np.int64)
    if len(recs) and bits:
        words = np.ascontiguousarray(recs, dtype=RECORD).view(_FIRST_WORD)["word"]
        shift = np.uint64(64 - bits)
        for start in range(0, len(words), _INDEX_CHUNK):
            counts += np.bincount((words[start:start + _INDEX_CHUNK] >> shift).astype(np.intp), minlength=1 << bits)
    elif len(recs):
        counts[0] = len(recs)
    return np.concatenate(([0], np.cumsum(counts))).astype("<u4")


def write_segment(path: Path, recs: np.ndarray) -> str:
    """Write sorted records to ``path`` and fsync it; return the file's BLAKE2b checksum (hex)."""
    if len(recs) >= 1 << 32:
        raise ValueError("a segment holds fewer than 2**32 records")
    bits = prefix_bits(len(recs))
    header = HEADER.pack(MAGIC, len(recs), bits)
    index = _index(recs, bits).tobytes()
    body = np.ascontiguousarray(recs, dtype=RECORD)
    checksum = hashlib.blake2b(digest_size=32)
    with open(path, "wb") as fh:
        for part in (header, index):
            fh.write(part)
            checksum.update(part)
        step = 1 << 20
        for start in range(0, len(body), step):
            chunk = body[start:start + step].tobytes()
            fh.write(chunk)
            checksum.update(chunk)
        fh.flush()
        os.fsync(fh.fileno())
    return checksum.hexdigest()


def file_checksum(path: Path) -> str:
    checksum = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            checksum.update(chunk)
    return checksum.hexdigest()


class Segment:
    """A read-only, memory-mapped segment; ``find`` is safe from many threads."""

    def __init__(self, path: Path, expected_entries: int | None = None) -> None:
        self.path = path
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < HEADER.size:
                    raise SegmentError(f"{path}: segment file is truncated ({size} bytes)")
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise SegmentError(f"{path}: cannot open segment: {exc}") from None
        magic, entries, bits = HEADER.unpack_from(self._mm, 0)
        if magic != MAGIC or bits > MAX_BITS:
            raise SegmentError(f"{path}: not a risk segment file")
        self._data = HEADER.size + 4 * ((1 << bits) + 1)
        if size != self._data + entries * RECORD_BYTES:
            raise SegmentError(f"{path}: size {size} does not match {entries} entries (truncated?)")
        if expected_entries is not None and entries != expected_entries:
            raise SegmentError(f"{path}: holds {entries} entries, manifest says {expected_entries}")
        self.entries = int(entries)
        self.size = size
        self._bits = int(bits)
        self._shift = 32 - bits
        index = np.frombuffer(self._mm, "<u4", (1 << bits) + 1, HEADER.size)
        self._index = index.tolist() if bits <= 12 else (
            memoryview(self._mm)[HEADER.size:self._data].cast("I") if sys.byteorder == "little"
            else index.astype("=u4"))

    def records(self) -> np.ndarray:
        """All records as a read-only numpy view of the mapping."""
        return np.frombuffer(self._mm, RECORD, self.entries, self._data)

    def check(self, statuses: frozenset[int]) -> None:
        """SegmentError unless lookups in this file are sound: records sorted and unique, every
        status one of ``statuses``, and the prefix index exactly the one the records imply.

        With the set digest (which covers the records' content) this checks everything a lookup
        reads, so an edited or reordered file cannot hide a key.
        """
        recs = self.records()
        stored = np.frombuffer(self._mm, "<u4", (1 << self._bits) + 1, HEADER.size)
        if len(recs) == 0:
            if stored.any():
                raise SegmentError(f"{self.path}: the prefix index of an empty segment is not empty")
            return
        words = key_words(recs["key"]).astype(np.uint64)  # one copy of the keys, as native integers
        hi, lo = words[:, 0], words[:, 1]
        if not np.all((hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))):
            raise SegmentError(f"{self.path}: records are not sorted and unique (file edited or damaged)")
        if not np.isin(recs["status"], sorted(statuses)).all():
            raise SegmentError(f"{self.path}: a record has a status this segment may not hold")
        # sorted keys: bucket b starts after every key whose prefix is below b
        prefixes = (hi >> np.uint64(64 - self._bits)).astype(np.intp) if self._bits else np.zeros(len(hi), np.intp)
        expected = np.zeros((1 << self._bits) + 1, np.int64)
        np.cumsum(np.bincount(prefixes, minlength=1 << self._bits), out=expected[1:])
        if not np.array_equal(stored, expected):
            raise SegmentError(f"{self.path}: the prefix index does not match the records (file edited or damaged)")


    def find(self, key: bytes) -> tuple[int, int] | None:
        """(status, until_days) of ``key`` in this segment, or None."""
        p = int.from_bytes(key[:4], "big") >> self._shift
        lo = self._index[p]
        hi = self._index[p + 1]
        mm = self._mm
        base = self._data
        while hi - lo > _LINEAR_SCAN:
            mid = (lo + hi) >> 1
            start = base + mid * RECORD_BYTES
            probe = mm[start:start + 16]
            if probe < key:
                lo = mid + 1
            elif probe > key:
                hi = mid
            else:
                return mm[start + 16], mm[start + 17] | (mm[start + 18] << 8)
        if lo >= hi:
            return None
        start = base + lo * RECORD_BYTES
        chunk = mm[start:base + hi * RECORD_BYTES]
        pos = chunk.find(key)
        while pos >= 0:
            if pos % RECORD_BYTES == 0:
                return chunk[pos + 16], chunk[pos + 17] | (chunk[pos + 18] << 8)
            pos = chunk.find(key, pos + 1)
        return None
