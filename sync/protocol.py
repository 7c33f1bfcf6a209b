"""The sync wire protocol, shared by the device client and the central server.

* Every request is signed by the device's Ed25519 key (enrolled with the server): headers
  ``X-Device-Id`` and ``X-Signature`` (base64 of Ed25519 over ``request_signing_bytes``). Pushes are
  idempotent, so a replayed request can do no harm; no timestamp is signed because a device with
  an untrusted clock must still be able to sync (that is how it gets the server's time).
* ``POST /v1/push`` carries a ``PushBatch`` of scan records in device order; the server answers
  ``PushResult.acked_seq``: the highest sequence number up to which it holds every record.
* Records are hash-chained: ``hash = SHA-256(DOMAIN || prev_hash || canonical(fields))``; the
  first record of a device has ``prev_hash = GENESIS``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

API = "/v1"
RECORD_DOMAIN = b"checkpoint-scanlog-v1\x00"
REQUEST_DOMAIN = b"checkpoint-sync-request-v1\x00"
GENESIS = bytes(32)
MAX_BATCH = 10_000
HEADER_DEVICE = "X-Device-Id"
HEADER_SIGNATURE = "X-Signature"
ENVELOPE_MEDIA_TYPE = "application/vnd.checkpoint.envelope"
CBOR_MEDIA_TYPE = "application/cbor"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WireRecord(_Wire):
    """One scan record as the device logged it. ``holder_enc`` is sealed (edge.privacy), hex."""

    seq: int = Field(ge=1)
    wall_time: str = Field(max_length=40)
    monotonic: float
    boot_id: str = Field(max_length=64)
    clock_trusted: bool
    format: str | None = Field(default=None, max_length=16)
    kind: str | None = Field(default=None, max_length=40)
    holder_enc: str | None = Field(default=None, max_length=200)
    decision: str = Field(max_length=16)
    reason: str = Field(max_length=48)
    policy_version: str | None = Field(default=None, max_length=64)
    risk_version: str | None = Field(default=None, max_length=64)
    prev_hash: str = Field(min_length=64, max_length=64)
    hash: str = Field(min_length=64, max_length=64)


class PushBatch(_Wire):
    device_id: str = Field(min_length=1, max_length=128)
    records: list[WireRecord] = Field(max_length=MAX_BATCH)


class PushResult(_Wire):
    device_id: str
    acked_seq: int
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    undecryptable: int = 0


class EnrollRequest(_Wire):
    device_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    #: raw 32-byte Ed25519 public key, base64
    public_key: str = Field(min_length=40, max_length=64)


class EnrollResult(_Wire):
    device_id: str
    enrolled: bool
    acked_seq: int = 0


class ErrorBody(_Wire):
    error: str
    detail: str = ""
    acked_seq: int | None = None


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, check_circular=False).encode


def canonical_fields(r: WireRecord | dict[str, Any]) -> bytes:
    """The bytes a record's hash covers (everything but the two hashes), deterministic JSON."""
    if isinstance(r, dict):
        fields = [r["seq"], r["wall_time"], float(r["monotonic"]), r["boot_id"], bool(r["clock_trusted"]),
                  r["format"], r["kind"], r["holder_enc"], r["decision"], r["reason"], r["policy_version"],
                  r["risk_version"]]
    else:
        fields = [r.seq, r.wall_time, float(r.monotonic), r.boot_id, bool(r.clock_trusted), r.format, r.kind,
                  r.holder_enc, r.decision, r.reason, r.policy_version, r.risk_version]
    return _encode(fields).encode()


def record_hash(prev_hash: bytes, fields: bytes) -> bytes:
    """Chain hash of one record given its predecessor's hash and its canonical fields."""
    return hashlib.sha256(RECORD_DOMAIN + prev_hash + fields).digest()


def request_signing_bytes(method: str, path: str, body: bytes) -> bytes:
    """What the device signs for one request: method, path with query, SHA-256 of the body."""
    return REQUEST_DOMAIN + f"{method.upper()}\x00{path}\x00".encode() + hashlib.sha256(body).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)
