"""Ingest one signed batch: verify the hash chain, decrypt holder hashes, store each record once."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from edge.privacy import HolderOpener, PrivacyError, holder_aad
from sync.protocol import GENESIS, PushResult, WireRecord, canonical_fields, record_hash
from sync.server.storage import Storage

log = logging.getLogger(__name__)


class IngestError(ValueError):
    """A batch was refused as a whole; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(f"{error}: {detail}")
        self.status, self.error, self.detail = status, error, detail


def check_chain(device_id: str, records: list[WireRecord], stored_prev: bytes | None) -> list[bytes]:
    """Recompute each record's hash and the links between them; return the hashes as bytes.

    ``stored_prev`` is the server's hash of the record just before the batch, if it holds it.
    """
    hashes: list[bytes] = []
    prev_seq = None
    for rec in records:
        prev = bytes.fromhex(rec.prev_hash)
        if prev_seq is None:
            if rec.seq == 1 and prev != GENESIS:
                raise IngestError(409, "chain_broken", f"{device_id} seq 1 does not start the chain")
            if stored_prev is not None and prev != stored_prev:
                raise IngestError(409, "chain_broken", f"{device_id} seq {rec.seq} does not follow the stored record")
        else:
            if rec.seq != prev_seq + 1:
                raise IngestError(422, "not_contiguous", f"{device_id} batch jumps from {prev_seq} to {rec.seq}")
            if prev != hashes[-1]:
                raise IngestError(409, "chain_broken", f"{device_id} seq {rec.seq} does not follow seq {prev_seq}")
        digest = record_hash(prev, canonical_fields(rec))
        if digest.hex() != rec.hash:
            raise IngestError(409, "record_altered", f"{device_id} seq {rec.seq} hash does not match its content")
        hashes.append(digest)
        prev_seq = rec.seq
    return hashes


def ingest(storage: Storage, opener: HolderOpener, device_id: str, records: list[WireRecord]) -> PushResult:
    """Store a batch idempotently and answer with the highest contiguous seq now held."""
    if not records:
        return PushResult(device_id=device_id, acked_seq=storage.acked_seq(device_id))
    lo, hi = records[0].seq, records[-1].seq
    stored_prev = storage.hashes(device_id, lo - 1, lo - 1).get(lo - 1) if lo > 1 else None
    hashes = check_chain(device_id, records, stored_prev)
    existing = storage.hashes(device_id, lo, hi)
    rows, duplicates, undecryptable = [], 0, 0
    for rec, digest in zip(records, hashes, strict=True):
        held = existing.get(rec.seq)
        if held is not None:
            if held != digest:
                log.error("event=ingest_conflict device=%s seq=%d action=the device log differs from what the "
                          "server holds (restored or swapped SD card?); investigate before re-enrolling",
                          device_id, rec.seq)
                raise IngestError(409, "conflict", f"{device_id} seq {rec.seq} differs from the stored record")
            duplicates += 1
            continue
        holder, sealed = None, None
        if rec.holder_enc is not None:
            sealed = bytes.fromhex(rec.holder_enc)
            try:
                holder = opener.open(sealed, holder_aad(device_id, rec.seq))
                sealed = None
            except PrivacyError as exc:
                undecryptable += 1
                log.warning("event=ingest_holder_undecryptable device=%s seq=%d error=%s action=kept sealed; "
                            "check the device's server_encryption_key", device_id, rec.seq, exc)
        rows.append((device_id, rec.seq, rec.wall_time, rec.monotonic, rec.boot_id, rec.clock_trusted, rec.format,
                     rec.kind, holder, sealed, rec.decision, rec.reason, rec.policy_version, rec.risk_version,
                     bytes.fromhex(rec.prev_hash), digest))
    stored, acked = storage.insert(device_id, rows, datetime.now(UTC).isoformat(timespec="seconds"))
    return PushResult(device_id=device_id, acked_seq=acked, stored=stored, duplicates=duplicates + len(rows) - stored,
                      undecryptable=undecryptable)
