"""The signed wire form of risk-list updates: full snapshots and deltas in one envelope kind.

Payload (CBOR map inside a ``risk-list`` envelope whose version is the new version):
``{"type": "snapshot"|"delta", "from": version applied to (0 for a snapshot), "to": version,
"n": records, "digest": 32-byte digest of the whole resulting set, "keys": n sorted 16-byte keys,
"meta": zlib(n status bytes + n little-endian u16 end dates), "head": signed head}``. Keys are
random hashes and are sent raw; the status and date columns compress to almost nothing. The
publication time is the envelope's signed ``issued_at``.

The *head* is a small envelope of its own (kind ``risk-head``: version, publication time, digest,
SHA-256 content hash and entry count of the whole resulting set, and what the list covers). A
device keeps it beside its store and re-checks the store against it every time the store is
opened, so what the store serves always comes from signed data, not from a file anyone with the
SD card can edit.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime

import cbor2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.wire.envelope import EnvelopeError, open_envelope, sign_envelope
from sync.wire.risk.digest import CONTENT_HASH_BYTES, DIGEST_BYTES, content_hash
from sync.wire.risk.records import RECORD, REMOVED, strictly_increasing
from sync.wire.risk.types import KEY_BYTES, Coverage, RiskStatus, RiskUpdateError

KIND = "risk-list"
HEAD_KIND = "risk-head"
SNAPSHOT = "snapshot"
DELTA = "delta"
_STATUSES = {int(s) for s in RiskStatus}


@dataclass(frozen=True)
class RiskHead:
    """The signed summary of one list version; ``blob`` is the envelope as the publisher signed it."""

    version: int
    published_at: datetime
    digest: bytes
    entries: int
    coverage: Coverage
    #: ``digest.content_hash`` of the whole set, sorted: what a device re-checks its store against
    set_hash: bytes
    blob: bytes


def sign_head(version: int, published_at: datetime, digest: bytes, entries: int, coverage: Coverage,
              set_hash: bytes, key: Ed25519PrivateKey) -> bytes:
    """Sign the head of version ``version``."""
    payload = cbor2.dumps({"digest": digest, "entries": int(entries), "covers": coverage.as_list(),
                           "set_hash": set_hash})
    return sign_envelope(HEAD_KIND, version, payload, key, issued_at=published_at)


def open_head(blob: bytes, publisher_keys: list[Ed25519PublicKey]) -> RiskHead:
    """Verify and decode a head; RiskUpdateError on any defect."""
    if not isinstance(blob, bytes | bytearray):
        raise RiskUpdateError("risk list head is missing")
    try:
        env = open_envelope(bytes(blob), HEAD_KIND, publisher_keys)
        body = cbor2.loads(env.payload)
    except EnvelopeError as exc:
        raise RiskUpdateError(f"risk list head rejected: {exc}") from None
    except Exception as exc:
        raise RiskUpdateError(f"risk list head is not CBOR ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise RiskUpdateError("risk list head must be a map")
    digest = _field(body, "digest", bytes)
    set_hash = _field(body, "set_hash", bytes)
    entries = _field(body, "entries", int)
    if (len(digest) != DIGEST_BYTES or len(set_hash) != CONTENT_HASH_BYTES  # type: ignore[arg-type]
            or entries < 0 or env.version < 1):  # type: ignore[operator]
        raise RiskUpdateError("risk list head has a bad digest, content hash, entry count or version")
    try:
        coverage = Coverage.parse(body.get("covers"))
    except ValueError as exc:
        raise RiskUpdateError(f"risk list head: {exc}") from None
    return RiskHead(env.version, env.issued_at, digest, entries, coverage, set_hash,  # type: ignore[arg-type]
                    bytes(blob))


@dataclass(frozen=True)
class RiskUpdate:
    """A verified, decoded update: records sorted by key (status 0 = removal, deltas only)."""

    type: str
    base_version: int
    version: int
    published_at: datetime
    digest: bytes
    records: np.ndarray
    head: RiskHead

    @property
    def is_snapshot(self) -> bool:
        return self.type == SNAPSHOT


def encode_update(kind: str, base_version: int, version: int, digest: bytes, recs: np.ndarray,
                  key: Ed25519PrivateKey, published_at: datetime, *, entries: int | None = None,
                  coverage: Coverage, set_hash: bytes | None = None) -> bytes:
    """Seal records (sorted, unique) as a signed snapshot or delta.

    ``entries`` and ``set_hash`` describe the whole resulting set (a snapshot's own by default).
    """
    recs = np.ascontiguousarray(recs, dtype=RECORD)
    meta = recs["status"].tobytes() + recs["until"].astype("<u2").tobytes()
    total = len(recs) if entries is None else entries
    payload = cbor2.dumps({
        "type": kind, "from": int(base_version), "to": int(version), "n": len(recs),
        "digest": digest, "keys": np.ascontiguousarray(recs["key"]).tobytes(),
        "meta": zlib.compress(meta, 6),
        "head": sign_head(version, published_at, digest, total, coverage,
                          content_hash(recs) if set_hash is None else set_hash, key),
    })
    return sign_envelope(KIND, version, payload, key, issued_at=published_at)


def _field(body: dict, name: str, kind: type) -> object:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RiskUpdateError(f"risk update field '{name}' is missing or not {kind.__name__}")
    return value


def decode_update(blob: bytes, publisher_keys: list[Ed25519PublicKey]) -> RiskUpdate:
    """Verify the signature and decode an update; raise RiskUpdateError on any defect."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise RiskUpdateError("risk update must be bytes")
    try:
        env = open_envelope(bytes(blob), KIND, publisher_keys)
    except EnvelopeError as exc:
        raise RiskUpdateError(f"risk update rejected: {exc}") from None
    try:
        body = cbor2.loads(env.payload)
    except Exception as exc:
        raise RiskUpdateError(f"risk update payload is not CBOR ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise RiskUpdateError("risk update payload must be a map")
    kind = _field(body, "type", str)
    base, version, n = (_field(body, name, int) for name in ("from", "to", "n"))
    digest, keys, meta = (_field(body, name, bytes) for name in ("digest", "keys", "meta"))
    if kind not in (SNAPSHOT, DELTA):
        raise RiskUpdateError(f"unknown risk update type '{kind}'")
    if version != env.version or version < 1:
        raise RiskUpdateError(f"payload version {version} does not match envelope version {env.version}")
    if kind == SNAPSHOT and base != 0:
        raise RiskUpdateError("a snapshot must not name a base version")
    if kind == DELTA and not 0 <= base < version:
        raise RiskUpdateError(f"delta from {base} to {version}: base must be below the new version")
    if len(digest) != DIGEST_BYTES or n < 0 or len(keys) != n * KEY_BYTES:
        raise RiskUpdateError("risk update is truncated: key block or digest has the wrong length")
    try:
        inflater = zlib.decompressobj()
        raw_meta = inflater.decompress(meta, 3 * n + 1)
    except zlib.error as exc:
        raise RiskUpdateError(f"risk update status block is corrupt: {exc}") from None
    if len(raw_meta) != 3 * n or not inflater.eof:
        raise RiskUpdateError("risk update status block has the wrong length (truncated or corrupt)")
    recs = np.zeros(n, RECORD)
    recs["key"] = np.frombuffer(keys, "V16")
    recs["status"] = np.frombuffer(raw_meta, np.uint8, n)
    recs["until"] = np.frombuffer(raw_meta, "<u2", n, n)
    if not strictly_increasing(recs["key"]):
        raise RiskUpdateError("risk update keys are not sorted and unique")
    allowed = _STATUSES | ({REMOVED} if kind == DELTA else set())
    if not np.isin(recs["status"], list(allowed)).all():
        raise RiskUpdateError("risk update has an unknown status code")
    if (recs["until"][recs["status"] == REMOVED] != 0).any():
        raise RiskUpdateError("a removal must not carry an end date")
    head = open_head(body.get("head"), publisher_keys)  # type: ignore[arg-type]
    if (head.version, head.published_at, head.digest) != (version, env.issued_at, digest):
        raise RiskUpdateError("risk update and its head disagree on version, publication time or digest")
    if kind == SNAPSHOT and head.entries != n:
        raise RiskUpdateError(f"snapshot holds {n} entries but its head says {head.entries}")
    return RiskUpdate(kind, base, version, env.issued_at, digest, recs, head)  # type: ignore[arg-type]
