"""Our own pass format ``CP1:``: a CWT (RFC 8392) in COSE_Sign1, zlib-compressed, base45 text.

Claims: 1 iss, 4 exp, 5 nbf, 6 iat, 7 cti (the pass id) and the private claim -65537, a map
holding the pass kind, the 16-byte holder hash (never the plain ID), allowed zones and the
vaccination / test / recovery facts. Signed with Ed25519 (EdDSA) or ES256.
"""

from __future__ import annotations

import base64
import secrets
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import base45
import cbor2

from edge.passes.codec import b45decode, cbor_loads, inflate, strip_prefix
from edge.passes.cose import EDDSA, ES256, check_alg, parse_sign1, sign1
from edge.passes.credential import (
    Credential,
    PassFormat,
    PassKind,
    Recovery,
    TestResult,
    Vaccination,
)
from edge.passes.cwt import CLAIM_CP1, CLAIM_CTI, CLAIM_EXP, CLAIM_IAT, CLAIM_ISS, CLAIM_NBF
from edge.passes.issuer import IssuerKey
from edge.passes.signing_keys import check_key_period, find_signer
from edge.passes.trust import SOURCE_CP1, TrustStore
from edge.verdict import PassRejected, Reason
from sync.wire.identifiers import HOLDER_HASH_BYTES

PREFIX = "CP1:"
FMT = PassFormat.CP1.value
ALGORITHMS = frozenset({EDDSA, ES256})
#: keys inside the CP1 claim map
K_KIND, K_HOLDER, K_ZONES, K_VACC, K_TEST, K_RECOVERY = 1, 2, 3, 4, 5, 6
CP1_KINDS = frozenset({PassKind.RESIDENT, PassKind.TRAVEL_PERMIT, PassKind.CROSS_PROVINCE_WORKER,
                       PassKind.STUDENT, PassKind.GOODS_DRIVER, PassKind.OFFICIAL})
MAX_ZONES = 32


def new_pass_id() -> str:
    """A short random pass id (80 bits, base32 without padding)."""
    return base64.b32encode(secrets.token_bytes(10)).decode()


def issue_cp1(key: IssuerKey, kind: PassKind | str, holder: bytes, *, expires_at: datetime,
              issued_at: datetime | None = None, valid_from: datetime | None = None,
              zones: tuple[str, ...] | list[str] = (), vaccination: Vaccination | None = None,
              test: TestResult | None = None, recovery: Recovery | None = None,
              pass_id: str | None = None) -> str:
    """Sign a CP1 pass and return its QR text (``"CP1:..."``).

    ``holder`` is the 16-byte ``holder_hash(citizen_id)``, never the plain ID.
    """
    kind = PassKind(kind)
    if kind not in CP1_KINDS:
        raise ValueError(f"{kind} is not a CP1 pass kind")
    if not isinstance(holder, bytes) or len(holder) != HOLDER_HASH_BYTES:
        raise ValueError("holder must be the 16-byte holder_hash(citizen_id), never the plain ID")
    issued_at = issued_at or datetime.now(UTC)
    body: dict[int, Any] = {K_KIND: kind.value, K_HOLDER: holder}
    if zones:
        body[K_ZONES] = [str(z) for z in zones]
    if vaccination:
        body[K_VACC] = [vaccination.doses, vaccination.series_doses, _d(vaccination.last_dose),
                        vaccination.product]
    if test:
        body[K_TEST] = [int(test.taken_at.timestamp()), bool(test.negative), test.test_type]
    if recovery:
        body[K_RECOVERY] = [_d(recovery.first_positive), _d(recovery.valid_from), _d(recovery.valid_until)]
    claims: dict[int, Any] = {CLAIM_ISS: key.issuer, CLAIM_IAT: int(issued_at.timestamp()),
                              CLAIM_EXP: int(expires_at.timestamp()),
                              CLAIM_CTI: (pass_id or new_pass_id()).encode(), CLAIM_CP1: body}
    if valid_from:
        claims[CLAIM_NBF] = int(valid_from.timestamp())
    cose = sign1(cbor2.dumps(claims), key.private_key, key.alg_id, key.kid)
    return PREFIX + base45.b45encode(zlib.compress(cose, 9)).decode()


def read_cp1(text: str, trust: TrustStore, now: datetime | None = None) -> Credential:
    """Decode and authenticate a CP1 pass; PassRejected with a reason on any defect.

    With ``now`` the signing key must be valid now and at the pass's issue time.
    Expiry of the pass itself is the verifier's job.
    """
    data = inflate(b45decode(strip_prefix(text, PREFIX, FMT), FMT), FMT, required=True)
    msg = parse_sign1(data, FMT)
    check_alg(msg.alg, FMT, ALGORITHMS)
    key = find_signer(msg, trust, SOURCE_CP1, FMT)
    claims = cbor_loads(msg.payload, FMT, "CWT")
    credential = _credential(claims, key.kid)
    if credential.issuer != key.issuer:
        # the claimed issuer is the pass's text: not quoted
        raise PassRejected(Reason.UNKNOWN_ISSUER, f"pass claims another issuer than its key's {key.issuer[:40]}",
                           format=FMT)
    check_key_period(key, credential.issued_at, now, FMT)
    return credential


def _bad(detail: str) -> PassRejected:
    return PassRejected(Reason.SCHEMA_INVALID, detail, format=FMT)


#: 9999-12-31T23:59:59Z: the last second a datetime holds (2**40 - 1 seconds overflowed it)
_MAX_TIMESTAMP = 253402300799


def _int(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_TIMESTAMP:
        raise _bad(f"{what} must be a timestamp (years 1970 to 9999) or a small integer")
    return value


def _str(value: Any, what: str, optional: bool = False, max_len: int = 128) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise _bad(f"{what} must be a non-empty string of at most {max_len} characters")
    return value


def _ts(value: Any, what: str) -> datetime:
    return datetime.fromtimestamp(_int(value, what), UTC)


def _d(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _date(value: Any, what: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(_str(value, what, max_len=10))  # type: ignore[arg-type]
    except ValueError:
        raise _bad(f"{what} is not an ISO date") from None


def _list(value: Any, n: int, what: str) -> list:
    if not isinstance(value, list | tuple) or len(value) != n:
        raise _bad(f"{what} must be a {n}-element array")
    return list(value)


def _credential(claims: Any, kid: bytes) -> Credential:
    if type(claims) is not dict and not isinstance(claims, Mapping):  # the plain type first: no ABC check
        raise _bad("CWT claims are not a map")
    body = claims.get(CLAIM_CP1)
    if type(body) is not dict and not isinstance(body, Mapping):
        raise _bad("CP1 claim missing")
    cti = claims.get(CLAIM_CTI)
    if not isinstance(cti, bytes) or not 0 < len(cti) <= 64:
        raise _bad("pass id (cti) missing")
    try:
        kind = PassKind(body.get(K_KIND))
        pass_id = cti.decode()
    except (ValueError, UnicodeDecodeError):
        raise _bad("unknown pass kind or undecodable pass id") from None
    if kind not in CP1_KINDS:
        raise _bad(f"{kind} is not a CP1 pass kind")
    holder = body.get(K_HOLDER)
    if not isinstance(holder, bytes) or len(holder) != HOLDER_HASH_BYTES:
        raise _bad("holder hash must be 16 bytes")
    zones = body.get(K_ZONES, [])
    if not isinstance(zones, list | tuple) or len(zones) > MAX_ZONES:
        raise _bad("zones must be a short array")
    vaccination = test = recovery = None
    if K_VACC in body:
        doses, series, last, product = _list(body[K_VACC], 4, "vaccination")
        if _int(doses, "doses") > 20 or _int(series, "series doses") > 20:
            raise _bad("dose counts out of range")
        vaccination = Vaccination(doses, series, _date(last, "last dose"), _str(product, "product", True))
    if K_TEST in body:
        taken, negative, test_type = _list(body[K_TEST], 3, "test")
        if not isinstance(negative, bool):
            raise _bad("test result must be a boolean")
        test = TestResult(_ts(taken, "test time"), negative, _str(test_type, "test type", True))
    if K_RECOVERY in body:
        first, start, end = _list(body[K_RECOVERY], 3, "recovery")
        recovery = Recovery(_date(first, "first positive"), _date(start, "valid from"), _date(end, "valid until"))
    return Credential(
        format=PassFormat.CP1, kind=kind, pass_id=pass_id,
        issuer=_str(claims.get(CLAIM_ISS), "issuer"),  # type: ignore[arg-type]
        kid=kid, holder_hash=holder,
        issued_at=_ts(claims.get(CLAIM_IAT), "iat"), expires_at=_ts(claims.get(CLAIM_EXP), "exp"),
        valid_from=_ts(claims[CLAIM_NBF], "nbf") if CLAIM_NBF in claims else None,
        vaccination=vaccination, test=test, recovery=recovery,
        zones=tuple(_str(z, "zone", max_len=64) for z in zones),  # type: ignore[misc]
        risk_keys=(holder,),
    )
