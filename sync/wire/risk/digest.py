"""A 256-bit additive digest of a whole risk set, updatable per change and fast for 10M entries.

Each record is mixed into four 64-bit lanes (a splitmix/murmur finaliser over the key's two
words, the status and the end date) and the lanes are summed modulo 2^64. Adding or removing one
record therefore adjusts the digest without re-reading the set, and a snapshot of 10 million
entries is digested by numpy in about a second.

This is an integrity check, not an authenticity check: the Ed25519 signature on every update is
what proves the publisher made it. The digest tells a device that the set it now holds differs
from the publisher's (a missed, doubled or damaged update) so it fetches a full snapshot. Being
additive over an invertible mix, it can be steered by someone who edits the set on purpose, so
what a device re-checks its store against at open is ``content_hash``: SHA-256 over the exact
sorted records, which the publisher signs in each list head.
"""

from __future__ import annotations

import hashlib

import numpy as np

from sync.wire.risk.records import RECORD, REMOVED, key_words

_MASK = (1 << 64) - 1
_SEEDS = np.array([0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93],
                  dtype=np.uint64)
_META_MUL = np.array([0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x2545F4914F6CDD1D, 0x9FB21C651E98DF25],
                     dtype=np.uint64)
_CHUNK = 1 << 20
DIGEST_BYTES = 32


def _fmix(x: np.ndarray) -> np.ndarray:
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def lane_sums(recs: np.ndarray) -> list[int]:
    """The four lane sums (mod 2^64) of the records' mixes; removal records are skipped."""
    sums = [0, 0, 0, 0]
    for start in range(0, len(recs), _CHUNK):
        part = recs[start:start + _CHUNK]
        part = part[part["status"] != REMOVED]
        if len(part) == 0:
            continue
        words = key_words(part["key"]).astype(np.uint64)
        hi, lo = words[:, 0], words[:, 1]
        meta = (part["status"].astype(np.uint64) << np.uint64(16)) | part["until"].astype(np.uint64)
        for lane in range(4):
            x = _fmix(hi ^ _SEEDS[lane])
            x ^= lo
            x += meta * _META_MUL[lane]
            x = _fmix(x)
            sums[lane] = (sums[lane] + int(x.sum(dtype=np.uint64))) & _MASK
    return sums


class SetDigest:
    """The running digest of a set: add and remove record arrays, read ``bytes``."""

    def __init__(self, lanes: list[int] | None = None) -> None:
        self._lanes = list(lanes) if lanes else [0, 0, 0, 0]

    @classmethod
    def of(cls, recs: np.ndarray) -> SetDigest:
        return cls(lane_sums(recs))

    @classmethod
    def from_bytes(cls, raw: bytes) -> SetDigest:
        if len(raw) != DIGEST_BYTES:
            raise ValueError(f"a set digest is {DIGEST_BYTES} bytes, got {len(raw)}")
        return cls([int.from_bytes(raw[i:i + 8], "little") for i in range(0, DIGEST_BYTES, 8)])

    def add(self, recs: np.ndarray) -> None:
        for lane, value in enumerate(lane_sums(recs)):
            self._lanes[lane] = (self._lanes[lane] + value) & _MASK

    def remove(self, recs: np.ndarray) -> None:
        for lane, value in enumerate(lane_sums(recs)):
            self._lanes[lane] = (self._lanes[lane] - value) & _MASK

    def copy(self) -> SetDigest:
        return SetDigest(self._lanes)

    @property
    def bytes(self) -> bytes:
        return b"".join(v.to_bytes(8, "little") for v in self._lanes)


CONTENT_HASH_BYTES = 32


def content_hash(recs: np.ndarray) -> bytes:
    """SHA-256 over the packed 19-byte records, in order (a set sorted by key has one hash).

    Hashed in chunks straight from the array (a memory-mapped segment is not copied whole).
    """
    recs = np.ascontiguousarray(recs, dtype=RECORD)
    raw = recs.view(np.uint8).reshape(-1) if len(recs) else np.zeros(0, np.uint8)
    checksum = hashlib.sha256()
    step = _CHUNK * RECORD.itemsize
    for start in range(0, len(raw), step):
        checksum.update(raw[start:start + step])
    return checksum.digest()
