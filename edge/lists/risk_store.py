"""The device's risk list: a verified, versioned set of 16-byte keys on disk, swapped atomically.

On disk (one directory): ``manifest.json`` names the version, publication time, set digest and
up to three segment files, oldest first: the base (the whole list as of the last compaction),
then at most two small sorted overlays of later changes (removals kept as status 0). A lookup
asks the newest segment first. A delta rewrites only the smallest overlay, so a 10k-change delta
on a 10M list writes about a megabyte; overlays fold into the next level when they outgrow a
fixed fraction of it, and the base is rewritten only when the larger overlay reaches 1/16 of it.

Every update is written to new files (fsync), then the manifest is replaced by rename (fsync of
the directory); readers keep using the old in-memory mapping until the new one is swapped in.

The card is not trusted: the manifest also keeps the publisher's signed *head* of the version
installed (version, publication time, set digest, entry count, what the list covers), and every
``open`` re-checks the store against it: the head's signature, the manifest's claims, each
segment's order and index, and the digest of the set the segments serve. A store that fails
any of these (or is older than the highest version this device installed) is refused loudly:
it serves nothing, ``refused`` says why (the verifier answers CHECK, the lamp shows the
list-damaged fault) and the next sync installs a full snapshot over it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.lists.version_floor import RollbackError, VersionFloor
from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic
from sync.wire.risk.digest import SetDigest, content_hash
from sync.wire.risk.records import (
    EPOCH_ORDINAL,
    RECORD,
    REMOVED,
    decode_until,
    empty,
    lookup_many,
    merge,
)
from sync.wire.risk.segment import (
    LIVE_STATUSES,
    OVERLAY_STATUSES,
    Segment,
    SegmentError,
    write_segment,
)
from sync.wire.risk.types import (
    KEY_BYTES,
    NO_COVERAGE,
    Coverage,
    RiskEntry,
    RiskStatus,
    RiskUpdateError,
)
from sync.wire.risk.updates import RiskHead, RiskUpdate, decode_update, open_head

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 2
#: the small overlay folds into the large one past max(L0_MIN, base/L0_RATIO) entries
L0_MIN, L0_RATIO = 16_384, 256
#: the large overlay folds into the base past max(4 * small limit, base/L1_RATIO) entries
L1_RATIO = 16
_STATUS = {int(s): s for s in RiskStatus}


@dataclass(frozen=True)
class RiskStoreStatus:
    """What ``checkpoint risk status`` and the status screen show."""

    version: int
    published_at: datetime | None
    entries: int
    bytes_on_disk: int
    segments: int
    needs_snapshot: bool
    covers: tuple[str, ...] = ()
    refused: str | None = None

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["published_at"] = self.published_at.isoformat() if self.published_at else None
        data["covers"] = list(self.covers)
        return data


class StoreRefused(CheckpointError, ValueError):
    """The store on the card does not match the signed head it claims (edited, damaged, rolled back)."""


@dataclass(frozen=True)
class _State:
    version: int
    published_at: datetime | None
    digest: bytes
    entries: int
    segments: tuple[tuple[Segment, str], ...]  # (segment, checksum), oldest first
    needs_snapshot: bool
    head: RiskHead | None = None
    refused: str | None = None

    def find(self, key: bytes) -> tuple[int, int] | None:
        for segment, _ in reversed(self.segments):
            hit = segment.find(key)
            if hit is not None:
                return hit
        return None


_EMPTY = _State(0, None, SetDigest().bytes, 0, (), True)


def _served_hash(base: np.ndarray, newer: np.ndarray) -> tuple[int, bytes]:
    """(entries, ``content_hash``) of the set ``base`` serves with the sorted overlay records
    ``newer`` on top (newer values replace, removals delete), streamed: the merged set of
    10 million records is never built, only the overlay records are visited one by one."""
    if len(newer) == 0:
        return len(base), content_hash(base)
    size = RECORD.itemsize
    raw = memoryview(np.ascontiguousarray(base).view(np.uint8).reshape(-1))
    newer_raw = np.ascontiguousarray(newer, dtype=RECORD).tobytes()
    found, pos = lookup_many(base, newer["key"])
    live = (newer["status"] != REMOVED).tolist()
    checksum = hashlib.sha256()
    cursor, entries = 0, len(base)
    for i, (hit, at) in enumerate(zip(found.tolist(), pos.tolist(), strict=True)):
        if at > cursor:
            checksum.update(raw[cursor * size:at * size])
            cursor = at
        if hit:  # the base record with this key is replaced (or removed)
            cursor, entries = at + 1, entries - 1
        if live[i]:
            checksum.update(newer_raw[i * size:(i + 1) * size])
            entries += 1
    checksum.update(raw[cursor * size:])
    return entries, checksum.digest()


def check_served_set(segments: list[Segment], head: RiskHead) -> None:
    """StoreRefused unless ``segments`` (oldest first) serve exactly the set ``head`` signs.

    Each segment must be sound for lookups (order, statuses, index); then the set they serve
    together (the base, with the overlays' newer values and removals on top) must have the head's
    entry count and SHA-256 content hash: a cryptographic hash, not the additive set digest, which
    someone editing the card on purpose could steer. A lone base is hashed straight from its
    mapping; with overlays the served set is merged first (see ``checkpoint bench risk``).
    """
    base, overlays = segments[0], segments[1:]
    base.check(LIVE_STATUSES)
    for segment in overlays:
        segment.check(OVERLAY_STATUSES)
    newer = empty()
    for segment in overlays:
        newer = merge(newer, segment.records())
    entries, served_hash = _served_hash(base.records(), newer)
    if entries != head.entries:
        raise StoreRefused(f"the segments serve {entries} entries, the signed head of version {head.version} "
                           f"holds {head.entries} (store edited or damaged)")
    if served_hash != head.set_hash:
        raise StoreRefused(f"the segments do not serve the set the signed head of version {head.version} "
                           "holds (content hash mismatch: store edited or damaged)")


class RiskStore:
    """The cached risk list (implements ``RiskLookup``); ``apply`` takes signed updates."""

    def __init__(self, directory: Path, publisher_keys: list[Ed25519PublicKey], state: _State,
                 floor: VersionFloor | None = None) -> None:
        self.directory = directory
        self._keys = list(publisher_keys)
        self._state = state
        self._floor = floor
        self._apply_lock = threading.Lock()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Path, publisher_keys: list[Ed25519PublicKey], floor: VersionFloor | None = None) -> RiskStore:
        """Open (or create) the store in directory ``path``, re-checking it against its signed head.

        A store that does not check out is refused: it serves nothing (``refused`` says why,
        ``needs_snapshot`` is set) and an error log line says what to do. ``floor`` is the
        device's anti-rollback record: a store older than the highest version installed is refused.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        try:
            state = cls._load(path, publisher_keys, floor)
        except (StoreRefused, RiskUpdateError, SegmentError, RollbackError, OSError, ValueError, KeyError,
                TypeError) as exc:
            reason = str(exc)[:300]
            log.error("event=risk_store_refused dir=%s reason=%r action=serving no risk list (scans get CHECK "
                      "risk_list_damaged, lamp shows list_damaged); the next sync installs a full signed "
                      "snapshot; if this repeats, replace the SD card", path, reason)
            state = replace(_EMPTY, refused=reason)
        store = cls(path, publisher_keys, state, floor)
        if state.refused is None:
            store._remove_unreferenced()
            if floor is not None and state.version:
                floor.raise_to("risk", state.version)  # a floor file lost on its own is rebuilt here
        log.info("event=risk_store_opened dir=%s version=%d entries=%d segments=%d needs_snapshot=%s "
                 "checked_in_s=%.3f refused=%s", path, state.version, state.entries, len(state.segments),
                 state.needs_snapshot, time.perf_counter() - started, state.refused is not None)
        return store

    @staticmethod
    def _load(path: Path, publisher_keys: list[Ed25519PublicKey], floor: VersionFloor | None) -> _State:
        manifest_path = path / MANIFEST
        installed = floor.get("risk") if floor is not None else 0
        if not manifest_path.exists():
            if installed:
                raise StoreRefused(f"{manifest_path} is missing, but version {installed} was installed here")
            return _EMPTY
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StoreRefused(f"unknown manifest format {data.get('format') if isinstance(data, dict) else data!r}")
        head = open_head(bytes.fromhex(data["head"]), publisher_keys)
        published = data.get("published_at")
        claims = {"version": data.get("version"), "published_at": published, "entries": data.get("entries"),
                  "digest": data.get("digest")}
        signed = {"version": head.version, "published_at": int(head.published_at.timestamp()),
                  "entries": head.entries, "digest": head.digest.hex()}
        for name, value in claims.items():
            if value != signed[name]:
                raise StoreRefused(f"manifest {name} {value!r} differs from the signed head's {signed[name]!r} "
                                   "(manifest edited)")
        if floor is not None:
            floor.check("risk", head.version, "the risk list on the card")
        items = data["segments"]
        if not isinstance(items, list) or not items:
            raise StoreRefused(f"manifest names no segment, but the signed head holds {head.entries} entries")
        segments = []
        for item in items:
            segment = Segment(path / str(item["file"]), int(item["entries"]))
            segments.append((segment, str(item["checksum"])))
        check_served_set([seg for seg, _ in segments], head)
        return _State(version=head.version, published_at=head.published_at, digest=head.digest,
                      entries=head.entries, segments=tuple(segments),
                      needs_snapshot=bool(data.get("needs_snapshot", False)), head=head)

    # ------------------------------------------------------------------ RiskLookup
    @property
    def version(self) -> int:
        return self._state.version

    @property
    def published_at(self) -> datetime | None:
        return self._state.published_at

    @property
    def needs_snapshot(self) -> bool:
        """True when the device must fetch a full snapshot (empty list, chain or digest mismatch)."""
        return self._state.needs_snapshot

    @property
    def coverage(self) -> Coverage:
        """The pass formats and issuers the installed list covers (as its signed head says)."""
        head = self._state.head
        return head.coverage if head is not None else NO_COVERAGE

    @property
    def refused(self) -> str | None:
        """Why the store on the card was refused at open (None when it checked out or is new)."""
        return self._state.refused

    def lookup(self, key: bytes, today: date | None = None) -> RiskEntry | None:
        """The entry for a 16-byte key, or None; an entry past its end date counts as absent."""
        if len(key) != KEY_BYTES:
            return None
        hit = self._state.find(bytes(key))
        if hit is None or hit[0] == REMOVED:
            return None
        status, until = hit
        if until:
            today = today or datetime.now(UTC).date()
            if today.toordinal() - EPOCH_ORDINAL > until:
                return None
        return RiskEntry(_STATUS[status], decode_until(until))

    def status(self) -> RiskStoreStatus:
        state = self._state
        manifest = self.directory / MANIFEST
        size = sum(seg.size for seg, _ in state.segments) + (manifest.stat().st_size if manifest.exists() else 0)
        return RiskStoreStatus(state.version, state.published_at, state.entries, size,
                               len(state.segments), state.needs_snapshot, tuple(self.coverage.as_list()),
                               state.refused)

    # ------------------------------------------------------------------ updates
    def apply(self, blob: bytes) -> int:
        """Verify and apply a signed snapshot or delta; return the new version.

        Raises RiskUpdateError (the current list stays in use) for a forged, replayed, older,
        truncated or corrupt update, a delta for another base version, or a digest mismatch;
        the last two also set ``needs_snapshot``.
        """
        with self._apply_lock:
            update = decode_update(blob, self._keys)
            state = self._state
            step = self._apply_snapshot if update.is_snapshot else self._apply_delta
            new_state = step(state, update)
            self._state = new_state
            self._remove_unreferenced()
            log.info("event=risk_update_applied type=%s version=%d entries=%d segments=%d",
                     update.type, new_state.version, new_state.entries, len(new_state.segments))
            return new_state.version

    def compact(self) -> None:
        """Fold every overlay into the base (one full rewrite; e.g. for a quiet night hour)."""
        with self._apply_lock:
            state = self._state
            if len(state.segments) < 2:
                return
            merged = empty()
            for segment, _ in state.segments:
                merged = merge(merged, segment.records())
            merged = merged[merged["status"] != REMOVED]
            written = self.directory / f"seg-{state.version:010d}-{secrets.token_hex(4)}.bin"
            try:
                checksum = write_segment(written, merged)
                new_state = replace(state, segments=((Segment(written, len(merged)), checksum),))
                self._write_manifest(new_state)
            except (OSError, SegmentError) as exc:
                with contextlib.suppress(OSError):
                    written.unlink()
                log.error("event=risk_compaction_failed error=%r action=keep_current_list", str(exc))
                return
            self._state = new_state
            self._remove_unreferenced()
            log.info("event=risk_compacted version=%d entries=%d", state.version, len(merged))

    def _reject(self, state: _State, message: str, needs_snapshot: bool = False) -> RiskUpdateError:
        if needs_snapshot and not state.needs_snapshot and state.head is not None:
            flagged = replace(state, needs_snapshot=True)
            try:
                self._write_manifest(flagged)
                self._state = flagged
            except OSError as exc:
                log.error("event=risk_manifest_write_failed error=%r", str(exc))
                self._state = flagged
        log.warning("event=risk_update_rejected version=%d reason=%r needs_snapshot=%s action=%s",
                    state.version, message, self._state.needs_snapshot,
                    "request_full_snapshot" if needs_snapshot else "keep_current_list")
        return RiskUpdateError(message)

    def _apply_snapshot(self, state: _State, update: RiskUpdate) -> _State:
        if update.version < state.version or (update.version == state.version and not state.needs_snapshot):
            raise self._reject(state, f"snapshot version {update.version} is not newer than the "
                                      f"current version {state.version} (replayed or older)")
        if self._floor is not None and update.version < self._floor.get("risk"):
            raise self._reject(state, f"snapshot version {update.version} is older than version "
                                      f"{self._floor.get('risk')}, which this device has installed already "
                                      "(replayed or older)")
        recs = update.records
        if SetDigest.of(recs).bytes != update.digest or content_hash(recs) != update.head.set_hash:
            raise self._reject(state, f"snapshot {update.version} does not match its own digest "
                                      "(corrupt publication)")
        return self._commit(update, [recs], [], len(recs), update.digest)

    def _apply_delta(self, state: _State, update: RiskUpdate) -> _State:
        if update.version <= state.version:
            raise self._reject(state, f"delta to version {update.version} is not newer than the "
                                      f"current version {state.version} (replayed or older)")
        if update.base_version != state.version or state.version == 0:
            raise self._reject(state, f"delta applies to version {update.base_version} but this list is "
                                      f"version {state.version} (chain mismatch)", needs_snapshot=True)
        recs = update.records
        old = self._current_entries(state, recs)
        digest = SetDigest.from_bytes(state.digest)
        digest.remove(old)
        digest.add(recs)
        if digest.bytes != update.digest:
            raise self._reject(state, f"after delta {update.base_version}->{update.version} the set "
                                      "digest does not match the publisher's", needs_snapshot=True)
        entries = state.entries - int((old["status"] != REMOVED).sum()) + int((recs["status"] != REMOVED).sum())
        if entries != update.head.entries:
            raise self._reject(state, f"after delta {update.base_version}->{update.version} the list holds "
                                      f"{entries} entries, its signed head says {update.head.entries}",
                               needs_snapshot=True)
        return self._commit(update, *self._plan(state, recs), entries, update.digest)

    @staticmethod
    def _current_entries(state: _State, recs: np.ndarray) -> np.ndarray:
        """The records the list holds now for the keys of ``recs`` (status 0 where absent)."""
        old = np.zeros(len(recs), RECORD)
        old["key"] = recs["key"]
        keys = np.ascontiguousarray(recs["key"]).tobytes()
        statuses = old["status"]
        untils = old["until"]
        for i in range(len(recs)):
            hit = state.find(keys[i * KEY_BYTES:(i + 1) * KEY_BYTES])
            if hit is not None:
                statuses[i], untils[i] = hit
        return old

    @staticmethod
    def _plan(state: _State, changes: np.ndarray) -> tuple[list[np.ndarray], list[tuple[Segment, str]]]:
        """Decide which segments to rewrite: (new segment records oldest first, segments kept)."""
        segments = list(state.segments)
        base = segments[0]
        base_n = base[0].entries
        l0_max = max(L0_MIN, base_n // L0_RATIO)
        l1_max = max(4 * l0_max, base_n // L1_RATIO)
        l1 = segments[1] if len(segments) > 1 else None
        l0 = segments[2] if len(segments) > 2 else None
        if l0 is None and l1 is not None and l1[0].entries <= l0_max:
            l0, l1 = l1, None
        small = merge(l0[0].records() if l0 else empty(), changes)
        if len(small) <= l0_max:
            return [small], [base, *([l1] if l1 else [])]
        large = merge(l1[0].records() if l1 else empty(), small)
        if len(large) <= l1_max:
            return [large], [base]
        log.info("event=risk_compaction base_entries=%d overlay_entries=%d", base_n, len(large))
        return [merge(base[0].records(), large, drop_removals=True)], []

    def _commit(self, update: RiskUpdate, new_records: list[np.ndarray], kept: list[tuple[Segment, str]],
                entries: int, digest: bytes) -> _State:
        """Write new segments, then the manifest; on any I/O failure remove them and keep the old list."""
        written: list[Path] = []
        try:
            segments = list(kept)
            for recs in new_records:
                path = self.directory / f"seg-{update.version:010d}-{secrets.token_hex(4)}.bin"
                written.append(path)
                checksum = write_segment(path, recs)
                segments.append((Segment(path, len(recs)), checksum))
            new_state = _State(update.version, update.published_at, digest, entries, tuple(segments), False,
                               head=update.head)
            self._write_manifest(new_state)
            if self._floor is not None:
                self._floor.raise_to("risk", update.version)
            return new_state
        except (OSError, SegmentError) as exc:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise self._reject(self._state, f"could not write version {update.version} to "
                                            f"{self.directory}: {exc}") from None

    def _write_manifest(self, state: _State) -> None:
        if state.head is None:
            raise OSError("no signed head to write (an empty list is not written)")
        data = {
            "format": FORMAT,
            "head": state.head.blob.hex(),
            "version": state.version,
            "published_at": int(state.published_at.timestamp()) if state.published_at else None,
            "digest": state.digest.hex(),
            "entries": state.entries,
            "needs_snapshot": state.needs_snapshot,
            "segments": [{"file": seg.path.name, "entries": seg.entries, "checksum": checksum}
                         for seg, checksum in state.segments],
        }
        write_atomic(self.directory / MANIFEST, json.dumps(data, indent=1).encode())

    def _remove_unreferenced(self) -> None:
        """Delete segment files no manifest names (left by a crash or replaced by an update)."""
        in_use = {seg.path.name for seg, _ in self._state.segments}
        for path in self.directory.glob("seg-*.bin"):
            if path.name not in in_use:
                with contextlib.suppress(OSError):
                    path.unlink()
        for stale in self.directory.glob(f".{MANIFEST}.*.tmp"):  # a crash mid write_atomic
            with contextlib.suppress(OSError):
                stale.unlink()
