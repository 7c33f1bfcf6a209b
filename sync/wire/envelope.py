"""Signed envelopes: how policy, trust lists, risk-list updates and server time travel.

An envelope is a CBOR array ``[header_bytes, payload, signature]``. ``header_bytes`` is the CBOR
encoding of ``{"kind", "version", "issued_at", "key_id"}``; the Ed25519 signature covers a domain
tag, the header bytes and the payload, so a payload cannot be moved to another kind or version.
The device pins the publisher's public key at provisioning and opens envelopes only with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync.wire.errors import CheckpointError

DOMAIN = b"checkpoint-envelope-v1\x00"
MAX_ENVELOPE_BYTES = 512 * 1024 * 1024


class EnvelopeError(CheckpointError, ValueError):
    """An envelope is corrupt, of the wrong kind, or not signed by a pinned key."""


@dataclass(frozen=True)
class Envelope:
    kind: str
    version: int
    issued_at: datetime
    key_id: str
    payload: bytes


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short stable id of a publisher key: hex of the first 8 bytes of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _signed_bytes(header: bytes, payload: bytes) -> bytes:
    return DOMAIN + len(header).to_bytes(4, "big") + header + payload


def sign_envelope(kind: str, version: int, payload: bytes, key: Ed25519PrivateKey,
         issued_at: datetime | None = None) -> bytes:
    """Sign ``payload`` as an envelope of ``kind`` and ``version``."""
    issued_at = issued_at or datetime.now(UTC)
    header = cbor2.dumps({
        "kind": kind,
        "version": int(version),
        "issued_at": int(issued_at.timestamp()),
        "key_id": key_id(key.public_key()),
    })
    signature = key.sign(_signed_bytes(header, payload))
    return cbor2.dumps([header, payload, signature])


def open_envelope(blob: bytes, kind: str, trusted_keys: list[Ed25519PublicKey]) -> Envelope:
    """Verify and unpack an envelope; raise EnvelopeError with a reason on any defect."""
    if len(blob) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"envelope of {len(blob)} bytes exceeds the {MAX_ENVELOPE_BYTES}-byte limit")
    try:
        outer = cbor2.loads(blob)
    except Exception as exc:
        raise EnvelopeError(f"not a CBOR envelope ({type(exc).__name__}): file is truncated or corrupt") from None
    if not (isinstance(outer, list | tuple) and len(outer) == 3
            and all(isinstance(p, bytes) for p in outer)):
        raise EnvelopeError("envelope must be [header, payload, signature] byte strings")
    header_bytes, payload, signature = outer
    signed = _signed_bytes(header_bytes, payload)
    for public_key in trusted_keys:
        try:
            public_key.verify(signature, signed)
            break
        except InvalidSignature:
            continue
    else:
        raise EnvelopeError("signature does not match any pinned publisher key (forged or corrupt)")
    try:
        header = cbor2.loads(header_bytes)
        env = Envelope(
            kind=str(header["kind"]),
            version=int(header["version"]),
            issued_at=datetime.fromtimestamp(int(header["issued_at"]), UTC),
            key_id=str(header["key_id"]),
            payload=payload,
        )
    except Exception as exc:
        raise EnvelopeError(f"envelope header is malformed: {exc}") from None
    if env.kind != kind:
        raise EnvelopeError(f"expected a '{kind}' envelope, got '{env.kind}'")
    return env
