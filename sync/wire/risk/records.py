"""Risk-list records as numpy arrays: the packed record type, dates, sorting checks and merges.

A record is 19 bytes: the 16-byte key, one status byte (0 = removal, only in deltas and overlays)
and the end date as little-endian days since 2020-01-01 (0 = no end date). Keys are compared as
raw bytes (numpy ``V16``: ``S16`` would drop trailing zero bytes).
"""

from __future__ import annotations

from datetime import date

import numpy as np

from sync.wire.risk.types import KEY_BYTES

RECORD = np.dtype([("key", "V16"), ("status", "u1"), ("until", "<u2")])
RECORD_BYTES = RECORD.itemsize
REMOVED = 0
#: day 0 of the ``until`` encoding; ``until`` is valid through that day inclusive
EPOCH = date(2020, 1, 1)
EPOCH_ORDINAL = EPOCH.toordinal()
MAX_DAYS = 0xFFFF


def encode_until(until: date | None) -> int:
    """Days since 2020-01-01 for an end date (0 for none); raise ValueError outside 2020-01-02..2199."""
    if until is None:
        return 0
    days = until.toordinal() - EPOCH_ORDINAL
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"end date {until.isoformat()} is outside 2020-01-02..2199")
    return days


def decode_until(days: int) -> date | None:
    return None if days == 0 else date.fromordinal(EPOCH_ORDINAL + days)


def day_number(today: date) -> int:
    """``today`` in the ``until`` encoding (may be <= 0 before 2020)."""
    return today.toordinal() - EPOCH_ORDINAL


def empty() -> np.ndarray:
    return np.zeros(0, RECORD)


def key_words(keys: np.ndarray) -> np.ndarray:
    """Keys as an (n, 2) array of big-endian 64-bit words (byte order == numeric order)."""
    return np.ascontiguousarray(keys).view(">u8").reshape(-1, 2)


def strictly_increasing(keys: np.ndarray) -> bool:
    """True when the keys are sorted and unique."""
    if len(keys) < 2:
        return True
    words = key_words(keys)
    hi, lo = words[:, 0], words[:, 1]
    return bool(np.all((hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))))


def from_items(items: list[tuple[bytes, int, int]]) -> np.ndarray:
    """Records from (key16, status, until_days) tuples, sorted by key; the last of duplicates wins."""
    if not items:
        return empty()
    for key, _, _ in items:
        if len(key) != KEY_BYTES:
            raise ValueError(f"risk key must be {KEY_BYTES} bytes, got {len(key)}")
    recs = np.zeros(len(items), RECORD)
    recs["key"] = np.frombuffer(b"".join(k for k, _, _ in items), "V16")
    recs["status"] = np.fromiter((s for _, s, _ in items), np.uint8, len(items))
    recs["until"] = np.fromiter((u for _, _, u in items), np.uint16, len(items))
    return sort_unique(recs)


def sort_unique(recs: np.ndarray) -> np.ndarray:
    """Sort records by key; for repeated keys keep the last one given."""
    words = key_words(recs["key"])
    order = np.lexsort((words[:, 1], words[:, 0]))  # stable; ~20x faster than argsort on 16-byte voids
    recs = recs[order]
    if len(recs) < 2:
        return recs
    last = np.ones(len(recs), bool)
    last[:-1] = recs["key"][1:] != recs["key"][:-1]
    return recs[last]


def merge(older: np.ndarray, newer: np.ndarray, drop_removals: bool = False) -> np.ndarray:
    """Union of two sorted record arrays; ``newer`` wins on equal keys.

    With ``drop_removals`` the result keeps no removal records (for the bottom level).
    """
    if len(newer) == 0:
        merged = older
    elif len(older) == 0:
        merged = newer
    else:
        okeys = np.ascontiguousarray(older["key"])
        nkeys = newer["key"]
        pos = np.searchsorted(okeys, nkeys)
        inside = pos < len(older)
        match = np.zeros(len(newer), bool)
        match[inside] = okeys[pos[inside]] == nkeys[inside]
        deleted = pos[match]
        keep = np.ones(len(older), bool)
        keep[deleted] = False
        kept = older[keep]
        insert_at = pos - np.searchsorted(deleted, pos, side="left")
        merged = np.insert(kept, insert_at, newer)
    if drop_removals:
        live = merged["status"] != REMOVED
        if not live.all():  # no copy of a national list that has nothing to drop
            merged = merged[live]
    return merged


def lookup_many(recs: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted ``recs`` and query ``keys``: (found mask, index into recs where found)."""
    if len(recs) == 0 or len(keys) == 0:
        return np.zeros(len(keys), bool), np.zeros(len(keys), np.int64)
    rkeys = recs["key"]
    pos = np.searchsorted(rkeys, keys)
    inside = pos < len(recs)
    found = np.zeros(len(keys), bool)
    found[inside] = rkeys[pos[inside]] == keys[inside]
    return found, pos
