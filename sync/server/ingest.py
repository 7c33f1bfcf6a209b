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

from sync.server.storage import DeviceState, RecordConflict, SignerRevoked, StaleEpoch, Storage
from sync.wire.errors import CheckpointError
from sync.wire.identifiers import IdentifierKey, keyed_certificate
from sync.wire.protocol import (
    GENESIS,
    MAX_SEQ,
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
                id_key: IdentifierKey | None = None, signer_key: bytes | None = None) -> PushResult:
    """Validate a push body signed by ``device_id`` and ingest its records.

    ``id_key``: the identifier key; EU DCC holder values (certificate hashes, which a device
    computes unkeyed) are stored keyed with it, like the citizen-id values CP1 passes carry.
    ``signer_key``: the key the request's signature was checked with (the HTTP side's, possibly
    remembered for a while): the batch is refused (401) unless it is still the device's key.
    """
    try:
        batch = parse_push(body)
    except ValidationError as exc:
        raise IngestError(422, "bad_batch", str(exc)[:500]) from None
    if batch["device_id"] != device_id:
        raise IngestError(422, "bad_batch", "batch device_id differs from the signing device")
    return ingest(storage, opener, device_id, batch["records"], id_key, pruned_through=batch.get("pruned_through"),
                  signer_key=signer_key)


def _as_dict(rec: WireRecord | Mapping[str, Any]) -> Mapping[str, Any]:
    return rec.__dict__ if isinstance(rec, WireRecord) else rec


class _Fork(Exception):
    """A chain-valid record differs from the one held under its seq: the device's log went back."""

    def __init__(self, seq: int):
        super().__init__(seq)
        self.seq = seq


@dataclass
class _Counts:
    duplicates: int = 0
    undecryptable: int = 0
    last_seq: int = 0
    #: hash of the batch's last record (the acked hash when the batch closes the chain)
    last_hash: bytes = b""


def _checked_rows(opener: HolderOpener, device_id: str, epoch: int, recs: list[Mapping[str, Any]],
                  links: dict[int, tuple[bytes, bytes]], counts: _Counts,
                  id_key: IdentifierKey | None = None) -> Iterator[tuple]:
    """Check each record in order and yield the storage rows of those not held yet.

    ``links`` are the held ``(prev_hash, hash)`` of seqs ``lo-1 .. hi+1`` of the device's chain:
    the batch must follow the record before it and lead to the record held after it (a batch that
    fills a gap is checked at both ends, whichever arrived first).
    Raises IngestError at the first bad record, _Fork at the first chain-valid record that differs
    from a held one; the storage consumes this inside its transaction (PostgreSQL streams the rows
    into COPY while the next ones are checked), so an error rolls back everything, and nothing of a
    refused batch is stored.
    """
    lo = recs[0]["seq"]
    before = links.get(lo - 1)
    held = {seq: digest for seq, (_prev, digest) in links.items()}
    prev = before[1] if before is not None else (GENESIS if lo == 1 else None)
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
                raise _Fork(seq)
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
        yield (device_id, epoch, seq, wall, float(mono), boot, bool(trusted), fmt, kind, holder, sealed, decision,
               reason, pol, risk, prev_hash, digest)
    after = links.get(expected_seq)
    if after is not None and prev is not None and after[0] != prev:
        raise IngestError(409, "chain_broken", f"{device_id} seq {expected_seq - 1} does not lead to the held "
                          f"seq {expected_seq}")
    counts.last_seq, counts.last_hash = expected_seq - 1, prev or b""


def acked_answer(storage: Storage, device_id: str, state: DeviceState, known: tuple[int, bytes] | None = None,
                 **counts: int) -> PushResult:
    """The answer naming what the server holds: acked seq, the hash there (the device's proof), epoch.
    ``known``: a (seq, hash) the server holds now (the batch's last record), read instead of the database."""
    acked = state.acked_seq
    if known is not None and acked and known[0] == acked:
        acked_hash: bytes | None = known[1]
    else:
        held = storage.links(device_id, acked, acked).get(acked) if acked else None
        acked_hash = held[1] if held else None
    return PushResult(device_id=device_id, acked_seq=acked, acked_hash=acked_hash.hex() if acked_hash else None,
                      epoch=state.epoch, **counts)


def _check_signer(device_id: str, state: DeviceState, signer_key: bytes | None) -> None:
    """Refuse (401) a request signed by a key that is no longer the device's (revoked or replaced
    since the HTTP side looked it up)."""
    if signer_key is not None and state.key != signer_key:
        raise IngestError(401, "unauthorized", f"{device_id} is revoked or enrolled with another key now")


#: forks (or concurrent forks) one batch may cause before it is refused for a retry
MAX_FORKS_PER_BATCH = 3


def ingest(storage: Storage, opener: HolderOpener, device_id: str,
           records: list[WireRecord] | list[Mapping[str, Any]], id_key: IdentifierKey | None = None, *,
           pruned_through: int | None = None, signer_key: bytes | None = None) -> PushResult:
    """Store a batch idempotently and answer with the highest contiguous seq now held.

    Refuses the whole batch (IngestError) if its seqs are not contiguous, or a link or hash does
    not match. A record that differs from the one held under its seq while following the chain
    (the device's log went back: a restored card) starts a new chain epoch after the last record
    both agree on; what the server held stays, and the fork is flagged for an operator.
    """
    if not records:
        state = storage.device_state(device_id)
        _check_signer(device_id, state, signer_key)
        return acked_answer(storage, device_id, state)
    recs = records if isinstance(records[0], dict) else [_as_dict(r) for r in records]
    lo = recs[0]["seq"]
    hi = lo + len(recs) - 1  # if the seqs are not contiguous the rows generator refuses the batch
    if recs[-1]["seq"] != hi:  # refused before ``hi`` reaches a query (it could pass the 63-bit range)
        raise IngestError(422, "not_contiguous", f"{device_id} batch of {len(recs)} records from seq {lo} "
                          f"ends at {recs[-1]['seq']}, not {hi}")
    if pruned_through is not None and pruned_through != lo - 1:
        raise IngestError(422, "bad_batch", f"{device_id} pruned_through {pruned_through} must be the seq "
                          f"before the batch ({lo - 1})")
    for _attempt in range(MAX_FORKS_PER_BATCH):
        counts = _Counts()
        state, links = storage.chain_view(device_id, lo - 1, min(hi + 1, MAX_SEQ))
        _check_signer(device_id, state, signer_key)
        rows = _checked_rows(opener, device_id, state.epoch, recs, links, counts, id_key)
        try:
            stored, acked = storage.insert(device_id, rows, datetime.now(UTC).isoformat(timespec="seconds"),
                                           span=(lo, hi), epoch=state.epoch, pruned_through=pruned_through,
                                           signer_key=signer_key)
        except SignerRevoked:
            raise IngestError(401, "unauthorized", f"{device_id} was revoked or enrolled with another key while "
                              "its batch was stored") from None
        except _Fork as fork:
            base = fork.seq - 1
            if base > state.acked_seq:
                # the server lacks records between its contiguous head and the fork: the chains are
                # proven to agree only up to that head, and seqs up to an epoch's base must all be
                # held in the epochs before it (else they would be filed where no chain looks)
                if lo > state.acked_seq + 1 and pruned_through is None:
                    # nothing in this batch links to the head: answer with what is held, and the
                    # device resends from there (it rewinds to an answer below its batch); one that
                    # pruned the records before its batch has nothing older to send: its fork starts
                    # at the head and the seqs it pruned are noted lost in the new epoch
                    return acked_answer(storage, device_id, state)
                base = state.acked_seq
            epoch = storage.start_epoch(device_id, after=state.epoch, base_seq=base)
            log.error("event=chain_forked device=%s seq=%d base_seq=%d epoch=%d action=the device log went back "
                      "(restored or swapped SD card): both versions are kept; review them, then 'checkpoint "
                      "server resolve-fork %s'", device_id, fork.seq, base, epoch, device_id)
            continue
        except StaleEpoch:
            continue
        except RecordConflict as exc:
            # another writer stored a different record under one of these seqs after ``links`` was
            # read (rolled back): check again against what it stored, which forks the chain there
            log.warning("event=ingest_conflict device=%s detail=%s action=none; re-checking the batch against "
                        "the record stored meanwhile", device_id, exc)
            continue
        if counts.last_seq != hi:  # a storage back-end that did not read every row
            raise RuntimeError(f"storage stopped reading the batch at seq {counts.last_seq} of {hi}")
        written = len(recs) - counts.duplicates
        return acked_answer(storage, device_id, DeviceState(state.epoch, acked), (hi, counts.last_hash), stored=stored,
                            duplicates=counts.duplicates + written - stored, undecryptable=counts.undecryptable)
    raise IngestError(409, "conflict", f"{device_id} chain forked {MAX_FORKS_PER_BATCH} times by one batch: "
                      "retry later")
