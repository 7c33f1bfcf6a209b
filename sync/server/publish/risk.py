"""Central side: the authoritative risk set, its version history and signed snapshots/deltas.

The directory holds ``state.json`` (version, publication time, digest, history), the current set
as one segment file, each signed delta ``delta-<version>.cbor`` (from the previous version) and
a cached signed snapshot of the latest version. Entries whose end date has passed are removed by
the next publication (they appear as removals in its delta), so devices drop them too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic
from sync.wire.risk.digest import SetDigest, content_hash
from sync.wire.risk.records import (
    RECORD,
    REMOVED,
    day_number,
    empty,
    encode_until,
    from_items,
    lookup_many,
    merge,
)
from sync.wire.risk.segment import Segment, write_segment
from sync.wire.risk.types import KEY_BYTES, Change, Coverage, RiskStatus
from sync.wire.risk.updates import DELTA, SNAPSHOT, encode_update

log = logging.getLogger(__name__)

STATE = "state.json"
#: a device more than this many versions behind gets a snapshot instead of the chain
MAX_CHAIN = 48
#: deltas kept on disk (older devices get a snapshot)
KEEP_DELTAS = 200


class RiskPublishError(CheckpointError, ValueError):
    """A publication was refused (bad change, nothing published yet); nothing was changed."""


class RiskPublisher:
    """Keeps the authoritative set in ``directory`` and signs its snapshots and deltas."""

    def __init__(self, directory: Path, signing_key: Ed25519PrivateKey, max_chain: int = MAX_CHAIN,
                 coverage: Coverage | None = None) -> None:
        """``coverage``: what the list covers from the next publication on (default: as before)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = signing_key
        self._max_chain = max_chain
        self._coverage = coverage
        self._lock = threading.RLock()
        self._state = self._load_state()

    def _refresh(self) -> None:
        """Re-read state.json (small): another process or instance may have published since."""
        self._state = self._load_state()

    def _load_state(self) -> dict:
        path = self.directory / STATE
        if not path.exists():
            return {"version": 0, "published_at": None, "digest": SetDigest().bytes.hex(),
                    "entries": 0, "set": None, "deltas": {}}
        return json.loads(path.read_text(encoding="utf-8"))

    @property
    def latest_version(self) -> int:
        with self._lock:
            self._refresh()
            return int(self._state["version"])

    @property
    def published_at(self) -> datetime | None:
        ts = self._state["published_at"]
        return datetime.fromtimestamp(ts, UTC) if ts is not None else None

    @property
    def entries(self) -> int:
        return int(self._state["entries"])

    @property
    def coverage(self) -> Coverage:
        """What the published list covers (formats and issuers), as its heads say."""
        return Coverage.parse(self._state.get("covers", []))

    def records(self) -> np.ndarray:
        """The current set, sorted by key (read-only view)."""
        name = self._state["set"]
        return Segment(self.directory / name).records() if name else empty()

    # ------------------------------------------------------------------ publishing
    def publish(self, changes: Iterable[Change] | np.ndarray, published_at: datetime | None = None,
                coverage: Coverage | None = None) -> int:
        """Apply changes (status None = remove) and publish the next version; return it.

        ``changes`` may also be a sorted, unique record array (``records.RECORD``) for bulk loads.
        ``coverage`` says which pass formats and issuers the list covers (kept for later versions);
        the first publication must say it.

        Entries already past their end date on the publication day are removed. A publication
        with no effective change still gets a new version (it refreshes the publication time).
        """
        with self._lock, open(self.directory / ".publish.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # one publisher at a time, across processes
            self._state = self._load_state()
            published_at = (published_at or datetime.now(UTC)).replace(microsecond=0)
            last = self.published_at
            if last is not None and published_at < last:
                raise RiskPublishError(f"publication time {published_at.isoformat()} is before the "
                                       f"last one {last.isoformat()}")
            coverage = coverage or self._coverage or (
                self.coverage if "covers" in self._state else None)
            if coverage is None or not coverage.items:
                raise RiskPublishError("say what the list covers (e.g. CP1:* and HC1:VN): a pass format or "
                                       "issuer the list does not cover gets CHECK on the devices")
            wanted = changes if isinstance(changes, np.ndarray) else self._normalise(changes)
            current = self.records()
            delta = self._effective_delta(current, wanted, day_number(published_at.date()))
            if len(current):
                found, pos = lookup_many(current, delta["key"])
                old = current[pos[found]]
                del found, pos
            else:
                old = empty()
            digest = SetDigest.from_bytes(bytes.fromhex(self._state["digest"]))
            digest.remove(old)
            digest.add(delta)
            new_set = merge(current, delta, drop_removals=True)
            version = self.latest_version + 1
            set_name = f"set-{version:010d}.bin"
            write_segment(self.directory / set_name, new_set)
            set_hash = content_hash(new_set)
            deltas = dict(self._state["deltas"])
            blob = b""
            if version > 1:  # a device at version 0 always gets a snapshot
                delta_name = f"delta-{version:010d}.cbor"
                blob = encode_update(DELTA, version - 1, version, digest.bytes, delta, self._key, published_at,
                                     entries=len(new_set), coverage=coverage, set_hash=set_hash)
                write_atomic(self.directory / delta_name, blob)
                deltas[str(version)] = delta_name
            for stale in sorted(deltas, key=int)[:-KEEP_DELTAS]:
                with contextlib.suppress(OSError):
                    (self.directory / deltas.pop(stale)).unlink()
            previous_set = self._state["set"]
            self._state = {"version": version, "published_at": int(published_at.timestamp()),
                           "digest": digest.bytes.hex(), "entries": len(new_set), "set": set_name,
                           "deltas": deltas, "covers": coverage.as_list(), "set_hash": set_hash.hex()}
            write_atomic(self.directory / STATE, json.dumps(self._state, indent=1).encode())
            # the previous set stays one round for readers that loaded the old state.json
            stale = [p for p in self.directory.glob("set-*.bin") if p.name not in (set_name, previous_set)]
            for path in [*stale, *self.directory.glob("snapshot-*.cbor")]:
                with contextlib.suppress(OSError):
                    path.unlink()
            log.info("event=risk_published version=%d changes=%d entries=%d delta_bytes=%d covers=%s",
                     version, len(delta), len(new_set), len(blob), ",".join(coverage.as_list()))
            return version

    @staticmethod
    def _normalise(changes: Iterable[Change]) -> np.ndarray:
        items = []
        for n, change in enumerate(changes, 1):
            try:
                key, status, until = change
                if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                    raise ValueError(f"key must be {KEY_BYTES} bytes")
                code = REMOVED if status is None else int(RiskStatus(status))
                items.append((key, code, 0 if status is None else encode_until(until)))
            except (TypeError, ValueError) as exc:
                raise RiskPublishError(f"change #{n} is invalid: {exc}") from None
        return from_items(items)

    @staticmethod
    def _effective_delta(current: np.ndarray, wanted: np.ndarray, today: int) -> np.ndarray:
        """The records that actually change the set: new or changed values and removals."""
        expired = current[(current["until"] != 0) & (current["until"] < today)]
        removals = np.zeros(len(expired), RECORD)
        removals["key"] = expired["key"]
        lapsed = (wanted["until"] != 0) & (wanted["until"] < today)
        removed = wanted["status"] == REMOVED
        if lapsed.any() or (wanted["until"][removed] != 0).any():  # copy only when something must change
            wanted = wanted.copy()
            wanted["status"][lapsed] = REMOVED
            wanted["until"][lapsed | removed] = 0
        del lapsed, removed
        changes = merge(removals, wanted)
        if len(current) == 0:  # the first publication (a national list at once): nothing to compare with
            keep = changes["status"] != REMOVED
            return changes if keep.all() else changes[keep]
        found, pos = lookup_many(current, changes["key"])
        same = np.zeros(len(changes), bool)
        hits = current[pos[found]]
        same[found] = (hits["status"] == changes["status"][found]) & (hits["until"] == changes["until"][found])
        absent_removal = ~found & (changes["status"] == REMOVED)
        return changes[~same & ~absent_removal]

    # ------------------------------------------------------------------ serving
    def snapshot(self) -> bytes:
        """The signed snapshot of the latest version (built once per version, then cached)."""
        with self._lock:
            self._refresh()
            version = self.latest_version
            if version == 0:
                raise RiskPublishError("nothing has been published yet")
            path = self.directory / f"snapshot-{version:010d}.cbor"
            with contextlib.suppress(FileNotFoundError):  # another process may be replacing it
                return path.read_bytes()
            records = self.records()
            blob = encode_update(SNAPSHOT, 0, version, bytes.fromhex(self._state["digest"]),
                                 records, self._key, self.published_at, coverage=self.coverage)
            write_atomic(path, blob)
            for old in self.directory.glob("snapshot-*.cbor"):
                if old != path:
                    with contextlib.suppress(OSError):
                        old.unlink()
            return blob

    def updates_for(self, device_version: int) -> list[bytes]:
        """What a device at ``device_version`` needs: the delta chain, or [snapshot] when the
        device is new (0), ahead, too far behind or the chain is no longer kept; [] if current."""
        with self._lock:
            self._refresh()
            latest = self.latest_version
            if device_version == latest:
                return []
            deltas = self._state["deltas"]
            versions = range(device_version + 1, latest + 1)
            if (device_version <= 0 or device_version > latest or len(versions) > self._max_chain
                    or any(str(v) not in deltas for v in versions)):
                return [self.snapshot()]
            chain = [(self.directory / deltas[str(v)]).read_bytes() for v in versions]
            if sum(len(b) for b in chain) > KEY_BYTES * max(self.entries, 1024):
                return [self.snapshot()]
            return chain
