"""Ingest one signed batch: verify the hash chain, decrypt holder hashes, store each record once.

This is the whole server push path after the HTTP layer (``app.push`` and ``checkpoint bench
sync`` both call ``verify_signature`` then ``ingest_body``). It runs once per record, so it works
on the plain dicts of ``sync.wire.protocol.parse_push`` and does every check in one pass: sequence
continuity, chain link, recomputed record hash, conflict with what is stored, holder decryption.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from sync.server.storage import RecordConflict, Storage
from sync.wire.errors import CheckpointError
from sync.wire.identifiers import IdentifierKey, keyed_certificate
from sync.wire.protocol import (
    GENESIS,
    RECORD_DOMAIN,
    WIRE_FIELDS,
    PushResult,
    WireRecord,
    canonical_values,
    parse_push,
    request_signing_bytes,
)
from sync.wire.sealed import HolderOpener, PrivacyError

log = logging.getLogger(__name__)


class IngestError(CheckpointError, ValueError):
    """A batch was refused as a whole; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, error: str, detail: str):
        super().__init__(f"{error}: {detail}")
        self.status, self.error, self.detail = status, error, detail


def verify_signature(public_key: bytes, signature: bytes, method: str, path: str, body: bytes) -> bool:
    """True if ``signature`` is the enrolled device key's signature of this request."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, request_signing_bytes(method, path, body))
    except (InvalidSignature, ValueError):
        return False
    return True


def ingest_body(storage: Storage, opener: HolderOpener, device_id: str, body: bytes,
                id_key: IdentifierKey | None = None) -> PushResult:
    """Validate a push body signed by ``device_id`` and ingest its records.

    ``id_key``: the identifier key; EU DCC holder values (certificate hashes, which a device
    computes unkeyed) are stored keyed with it, like the citizen-id values CP1 passes carry.
    """
    try:
        batch = parse_push(body)
    except ValidationError as exc:
        raise IngestError(422, "bad_batch", str(exc)[:500]) from None
    if batch["device_id"] != device_id:
        raise IngestError(422, "bad_batch", "batch device_id differs from the signing device")
    return ingest(storage, opener, device_id, batch["records"], id_key)


def _as_dict(rec: WireRecord | Mapping[str, Any]) -> Mapping[str, Any]:
    return rec.__dict__ if isinstance(rec, WireRecord) else rec


@dataclass
class _Counts:
    duplicates: int = 0
    undecryptable: int = 0
    last_seq: int = 0


def _checked_rows(opener: HolderOpener, device_id: str, recs: list[Mapping[str, Any]], held: dict[int, bytes],
                  counts: _Counts, id_key: IdentifierKey | None = None) -> Iterator[tuple]:
    """Check each record in order and yield the storage rows of those not held yet.

    Raises IngestError at the first bad record; the storage consumes this inside its transaction
    (PostgreSQL streams the rows into COPY while the next ones are checked), so an error rolls back
    everything, and nothing of a refused batch is stored.
    """
    lo = recs[0]["seq"]
    stored_prev = held.pop(lo - 1, None)  # what is left in ``held`` are seqs of this batch
    prev = stored_prev if lo > 1 else GENESIS
    aad_prefix = f"{device_id}\x00".encode()  # + str(seq) = sync.wire.sealed.holder_aad(device_id, seq)
    open_sealed = opener.batch_opener()
    sha256 = hashlib.sha256
    expected_seq = lo
    every_field = itemgetter(*WIRE_FIELDS)
    for rec in recs:
        try:
            values = every_field(rec)
        except KeyError:  # an optional field left out of the JSON
            values = tuple(rec.get(name) for name in WIRE_FIELDS)
        seq, wall, mono, boot, trusted, fmt, kind, enc, decision, reason, pol, risk, prev_hex, hash_hex = values
        if seq != expected_seq:
            raise IngestError(422, "not_contiguous", f"{device_id} batch jumps from {expected_seq - 1} to {seq}")
        try:
            prev_hash, claimed = bytes.fromhex(prev_hex), bytes.fromhex(hash_hex)
        except ValueError:
            raise IngestError(422, "bad_batch", f"{device_id} seq {seq} hash is not hex") from None
        if len(prev_hash) != 32:
            raise IngestError(422, "bad_batch", f"{device_id} seq {seq} prev_hash is not 32 bytes of hex")
        if prev is not None and prev_hash != prev:
            if seq == 1:
                raise IngestError(409, "chain_broken", f"{device_id} seq 1 does not start the chain")
            if seq == lo:
                raise IngestError(409, "chain_broken", f"{device_id} seq {seq} does not follow the stored record")
            raise IngestError(409, "chain_broken", f"{device_id} seq {seq} does not follow seq {seq - 1}")
        digest = sha256(RECORD_DOMAIN + prev_hash + canonical_values(*values[:12])).digest()
        if digest != claimed:
            raise IngestError(409, "record_altered", f"{device_id} seq {seq} hash does not match its content")
        prev, expected_seq = digest, seq + 1
        stored_hash = held.get(seq) if held else None
        if stored_hash is not None:
            if stored_hash != digest:
                log.error("event=ingest_conflict device=%s seq=%d action=the device log differs from what the "
                          "server holds (restored or swapped SD card?); investigate before re-enrolling",
                          device_id, seq)
                raise IngestError(409, "conflict", f"{device_id} seq {seq} differs from the stored record")
            counts.duplicates += 1
            continue
        holder = sealed = None
        if enc is not None:
            try:
                sealed = bytes.fromhex(enc)
            except ValueError:  # covered by the hash, so the device wrote it: keep it as it came
                sealed = enc.encode()
            try:
                holder = open_sealed(sealed, aad_prefix + str(seq).encode())
                sealed = None
                if fmt == "HC1" and id_key is not None:
                    holder = keyed_certificate(holder, id_key)
            except PrivacyError as exc:
                counts.undecryptable += 1
                log.warning("event=ingest_holder_undecryptable device=%s seq=%d error=%s action=kept sealed; "
                            "check the device's server_encryption_key", device_id, seq, exc)
        yield (device_id, seq, wall, float(mono), boot, bool(trusted), fmt, kind, holder, sealed, decision, reason,
               pol, risk, prev_hash, digest)
    counts.last_seq = expected_seq - 1


def ingest(storage: Storage, opener: HolderOpener, device_id: str,
           records: list[WireRecord] | list[Mapping[str, Any]], id_key: IdentifierKey | None = None) -> PushResult:
    """Store a batch idempotently and answer with the highest contiguous seq now held.

    Refuses the whole batch (IngestError) if its seqs are not contiguous, a link or hash does not
    match, or a record differs from the one the server already holds under that seq.
    """
    if not records:
        return PushResult(device_id=device_id, acked_seq=storage.acked_seq(device_id))
    recs = records if isinstance(records[0], dict) else [_as_dict(r) for r in records]
    lo = recs[0]["seq"]
    hi = lo + len(recs) - 1  # if the seqs are not contiguous the rows generator refuses the batch
    if recs[-1]["seq"] != hi:  # refused before ``hi`` reaches a query (it could pass the 63-bit range)
        raise IngestError(422, "not_contiguous", f"{device_id} batch of {len(recs)} records from seq {lo} "
                          f"ends at {recs[-1]['seq']}, not {hi}")
    held = storage.hashes(device_id, lo - 1, hi)
    counts = _Counts()
    try:
        stored, acked = storage.insert(device_id, _checked_rows(opener, device_id, recs, held, counts, id_key),
                                       datetime.now(UTC).isoformat(timespec="seconds"), span=(lo, hi))
    except RecordConflict as exc:  # a concurrent writer stored a different record for one of these seqs
        log.error("event=ingest_conflict device=%s detail=%s action=the device log differs from what the "
                  "server holds; investigate before re-enrolling", device_id, exc)
        raise IngestError(409, "conflict", str(exc)) from None
    if counts.last_seq != hi:  # a storage back-end that did not read every row
        raise RuntimeError(f"storage stopped reading the batch at seq {counts.last_seq} of {hi}")
    written = len(recs) - counts.duplicates
    return PushResult(device_id=device_id, acked_seq=acked, stored=stored,
                      duplicates=counts.duplicates + written - stored, undecryptable=counts.undecryptable)
