"""The sync wire protocol, shared by the device client and the central server.

* Every request is signed by the device's Ed25519 key (enrolled with the server): headers
  ``X-Device-Id`` and ``X-Signature`` (base64 of Ed25519 over ``request_signing_bytes``). Pushes are
  idempotent, so a replayed request can do no harm; no timestamp is signed because a device with
  an untrusted clock must still be able to sync (that is how it gets the server's time).
* ``POST /v1/push`` carries a ``PushBatch`` of scan records in device order; the server answers
  ``PushResult.acked_seq``: the highest sequence number up to which it holds every record (or knows
  it gone for good), and ``acked_hash``, the hash of the record at that seq. The device believes
  an acknowledgement only up to what it sent and only when the hash is its own record's: a server
  that lost data answers with less, and the device resends what it still has.
* A device log that went backwards (a restored card) forks its chain: the server keeps what it
  holds and files the device's new records under a new chain *epoch* linked at the last record
  both agree on, and flags the fork for an operator.
* Records are hash-chained: ``hash = SHA-256(DOMAIN || prev_hash || canonical(fields))``; the
  first record of a device has ``prev_hash = GENESIS``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Annotated, Any, Required

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

API = "/v1"
RECORD_DOMAIN = b"checkpoint-scanlog-v1\x00"
REQUEST_DOMAIN = b"checkpoint-sync-request-v1\x00"
ANSWER_DOMAIN = b"checkpoint-push-answer-v1\x00"
GENESIS = bytes(32)
MAX_BATCH = 10_000
#: sequence numbers are signed 64-bit integers in both server databases
MAX_SEQ = 2**63 - 1
#: device ids: what enrollment accepts, what a signed request may name (checked before any lookup)
DEVICE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
HEADER_DEVICE = "X-Device-Id"
HEADER_SIGNATURE = "X-Signature"
ENVELOPE_MEDIA_TYPE = "application/vnd.checkpoint.envelope"
CBOR_MEDIA_TYPE = "application/cbor"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Field types shared by the models (client, docs) and the server's lean TypedDict parser, so both
# enforce exactly the same limits.
# Record text is printable ASCII (ISO times, ids, enum values): no NUL or control characters, which
# PostgreSQL text refuses and no device writes.
_PRINTABLE = r"^[\x20-\x7e]*$"
_Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]
_Monotonic = Annotated[float, Field(allow_inf_nan=False)]
_WallTime = Annotated[str, Field(max_length=40, pattern=_PRINTABLE)]
_BootId = Annotated[str, Field(max_length=64, pattern=_PRINTABLE)]
_Format = Annotated[str | None, Field(max_length=16, pattern=_PRINTABLE)]
_Kind = Annotated[str | None, Field(max_length=40, pattern=_PRINTABLE)]
_HolderEnc = Annotated[str | None, Field(max_length=200, pattern=_PRINTABLE)]
_Decision = Annotated[str, Field(max_length=16, pattern=_PRINTABLE)]
_Reason = Annotated[str, Field(max_length=48, pattern=_PRINTABLE)]
_Version = Annotated[str | None, Field(max_length=64, pattern=_PRINTABLE)]
_Hash = Annotated[str, Field(min_length=64, max_length=64)]
_DeviceId = Annotated[str, Field(min_length=1, max_length=128)]
_PrunedThrough = Annotated[int | None, Field(ge=0, le=2**63 - 1)]


class WireRecord(_Wire):
    """One scan record as the device logged it. ``holder_enc`` is sealed (sync.wire.sealed), hex."""

    seq: _Seq
    wall_time: _WallTime
    monotonic: _Monotonic
    boot_id: _BootId
    clock_trusted: bool
    format: _Format = None
    kind: _Kind = None
    holder_enc: _HolderEnc = None
    decision: _Decision
    reason: _Reason
    policy_version: _Version = None
    risk_version: _Version = None
    prev_hash: _Hash
    hash: _Hash


class PushBatch(_Wire):
    device_id: _DeviceId
    records: Annotated[list[WireRecord], Field(max_length=MAX_BATCH)]
    #: the device no longer holds records up to this seq (pruned): what the server lacks of them is
    #: gone for good, and the first record of this batch starts the chain the server checks
    pruned_through: _PrunedThrough = None


class WireRecordDict(TypedDict, total=False):
    """``WireRecord`` as a plain dict: what the server's ingest reads (no model object per record)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    seq: Required[_Seq]
    wall_time: Required[_WallTime]
    monotonic: Required[_Monotonic]
    boot_id: Required[_BootId]
    clock_trusted: Required[bool]
    format: _Format
    kind: _Kind
    holder_enc: _HolderEnc
    decision: Required[_Decision]
    reason: Required[_Reason]
    policy_version: _Version
    risk_version: _Version
    prev_hash: Required[_Hash]
    hash: Required[_Hash]


class PushBatchDict(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    device_id: Required[_DeviceId]
    records: Required[Annotated[list[WireRecordDict], Field(max_length=MAX_BATCH)]]
    pruned_through: _PrunedThrough


_PUSH_ADAPTER = TypeAdapter(PushBatchDict)


def wall_instant(wall_time: str) -> datetime | None:
    """A record's ``wall_time`` as an aware instant, None if it is not an ISO time. Devices write
    UTC with its offset; the field is the device's word (any printable text), so a time without
    an offset is read as UTC: naive and aware times never meet in one comparison."""
    try:
        at = datetime.fromisoformat(wall_time)
    except (TypeError, ValueError):
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def parse_push(body: bytes) -> PushBatchDict:
    """Validate a push body with the same limits as ``PushBatch``, in one pass, into plain dicts.

    Optional fields absent from the JSON are absent from the dicts (read them with ``.get``).
    Raises pydantic.ValidationError.
    """
    return _PUSH_ADAPTER.validate_json(body)


class PushResult(_Wire):
    device_id: str
    acked_seq: int
    #: hex hash of the device's record at ``acked_seq`` (None at 0, or when the server holds no
    #: record there because the device reported it pruned): the proof the device checks
    acked_hash: str | None = None
    #: the device's chain epoch the server files new records under (0 until a fork)
    epoch: int = 0
    #: base64 Ed25519 signature by the publisher key over ``push_answer_signing_bytes``: only the
    #: server can say what it holds, and only about this request
    signature: str | None = None
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    undecryptable: int = 0


class EnrollRequest(_Wire):
    device_id: str = Field(min_length=1, max_length=128, pattern=DEVICE_ID_PATTERN)
    #: raw 32-byte Ed25519 public key, base64
    public_key: str = Field(min_length=40, max_length=64)


class EnrollResult(_Wire):
    device_id: str
    enrolled: bool
    acked_seq: int = 0
    #: base64 of an ``enrollment`` envelope signed by the publisher key binding the device id to
    #: its public key: after a server restore the device re-admits itself with it (``/v1/readmit``)
    certificate: str | None = None


class ReadmitRequest(_Wire):
    """A device the server no longer knows proves it is the enrolled one: its request is signed by
    the key the certificate (signed by this server's publisher key) binds to its id."""

    device_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    certificate: str = Field(min_length=1, max_length=4096)


ENROLLMENT_KIND = "enrollment"


class EnrollmentClaim(_Wire):
    """The payload of an enrollment certificate."""

    device_id: str
    public_key: str


class ErrorBody(_Wire):
    error: str
    detail: str = ""
    acked_seq: int | None = None


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, check_circular=False).encode
_CANON = "[%d,%s,%r,%s,%s,%s,%s,%s,%s,%s,%s,%s]"
_esc = encode_basestring_ascii


#: wire record fields: the ones the hash covers, in canonical order, then the two hashes
HASHED_FIELDS = ("seq", "wall_time", "monotonic", "boot_id", "clock_trusted", "format", "kind", "holder_enc",
                 "decision", "reason", "policy_version", "risk_version")
WIRE_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")


def canonical_values(seq: Any, wall: Any, mono: Any, boot: Any, trusted: Any, fmt: Any, kind: Any, holder: Any,
                     decision: Any, reason: Any, pol: Any, risk: Any) -> bytes:
    """``canonical_fields`` of the HASHED_FIELDS values, given in that order."""
    mono, trusted = float(mono), bool(trusted)
    if type(seq) is int and mono - mono == 0.0:  # not a bool or float seq; a finite monotonic
        try:  # _esc raises TypeError for anything but str
            return (_CANON % (seq, _esc(wall), mono, _esc(boot), "true" if trusted else "false",
                              "null" if fmt is None else _esc(fmt), "null" if kind is None else _esc(kind),
                              "null" if holder is None else _esc(holder), _esc(decision), _esc(reason),
                              "null" if pol is None else _esc(pol), "null" if risk is None else _esc(risk))).encode()
        except TypeError:
            pass
    return _encode([seq, wall, mono, boot, trusted, fmt, kind, holder, decision, reason, pol, risk]).encode()


def canonical_fields(r: WireRecord | dict[str, Any]) -> bytes:
    """The bytes a record's hash covers (everything but the two hashes), deterministic JSON.

    Byte for byte ``json.dumps([...], separators=(",", ":"), ensure_ascii=True)`` of the field
    list (that is the fallback for unusual values); the usual case is formatted directly with the
    json module's C string escaper because this runs once per record on ingest.
    """
    if isinstance(r, dict):
        get = r.get
        return canonical_values(r["seq"], r["wall_time"], r["monotonic"], r["boot_id"], r["clock_trusted"],
                                get("format"), get("kind"), get("holder_enc"), r["decision"], r["reason"],
                                get("policy_version"), get("risk_version"))
    return canonical_values(r.seq, r.wall_time, r.monotonic, r.boot_id, r.clock_trusted, r.format, r.kind,
                            r.holder_enc, r.decision, r.reason, r.policy_version, r.risk_version)


def record_hash(prev_hash: bytes, fields: bytes) -> bytes:
    """Chain hash of one record given its predecessor's hash and its canonical fields."""
    return hashlib.sha256(RECORD_DOMAIN + prev_hash + fields).digest()


def request_signing_bytes(method: str, path: str, body: bytes) -> bytes:
    """What the device signs for one request: method, path with query, SHA-256 of the body."""
    return REQUEST_DOMAIN + f"{method.upper()}\x00{path}\x00".encode() + hashlib.sha256(body).digest()


def push_answer_signing_bytes(result: PushResult, request_body: bytes) -> bytes:
    """What the server signs in a push answer: who, acked seq, its hash, epoch, and the request's SHA-256."""
    claim = json.dumps([result.device_id, result.acked_seq, result.acked_hash, result.epoch], separators=(",", ":"))
    return ANSWER_DOMAIN + claim.encode() + b"\x00" + hashlib.sha256(request_body).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


_Short = Annotated[str, Field(max_length=64, pattern=_PRINTABLE)]
_Count = Annotated[int, Field(ge=0, le=2**62)]
_Seconds = Annotated[float, Field(ge=0, le=10 * 365 * 86400, allow_inf_nan=False)]


class Heartbeat(_Wire):
    """What a device reports about itself on every sync cycle, with or without records to push.

    ``POST /v1/heartbeat`` (signed like every request). The server keeps the last one per device:
    its arrival is the device's "last seen", its content the fleet view's health columns.
    Every field is bounded: a device's own report is still untrusted input.
    """

    device_id: _DeviceId
    #: the device's wall time when it sent this (compare with the server's to see clock skew)
    sent_at: _WallTime
    software_version: _Short
    uptime_s: _Seconds
    #: the daemon's state (running, camera_lost, starting, …) and its active faults
    state: _Short
    faults: Annotated[list[_Short], Field(max_length=16)] = []
    clock_trusted: bool
    trust_version: _Count | None = None
    policy_version: _Count | None = None
    risk_version: _Count | None = None
    risk_published_at: _WallTime | None = None
    #: scan records written but not yet acknowledged by the server
    backlog: _Count = 0
    disk_free_mb: Annotated[float, Field(ge=0, le=2**40, allow_inf_nan=False)] | None = None
    cpu_temp_c: Annotated[float, Field(ge=-60, le=200, allow_inf_nan=False)] | None = None
    last_frame_age_s: _Seconds | None = None
    decisions: _Count = 0
