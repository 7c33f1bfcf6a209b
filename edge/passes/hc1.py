"""EU Digital COVID Certificate (``HC1:``): prefix -> base45 -> zlib -> COSE_Sign1 -> CWT -> DCC payload.

ES256 and PS256; the DSC is looked up by kid (protected header wins, every certificate with the
kid is tried), must be valid when the DCC was issued and now, and its DCC key-usage OIDs (if
any) must cover the certificate type. The payload (claim -260/1) is checked against the DCC
JSON schema shipped in ``dcc_schema.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import cbor2
import jsonschema

from edge.passes.codec import b45decode, cbor_loads, inflate, strip_prefix
from edge.passes.cose import ES256, PS256, Sign1, check_alg, parse_sign1
from edge.passes.credential import Credential, PassFormat, PassKind, Recovery, TestResult, Vaccination
from edge.passes.cwt import CLAIM_EXP, CLAIM_HCERT, CLAIM_IAT, CLAIM_ISS
from edge.passes.signing_keys import check_key_period, find_signer
from edge.passes.trust import SOURCE_DSC, TrustedKey, TrustStore
from edge.passes.valuesets import unknown_codes
from edge.verdict import PassRejected, Reason

PREFIX = "HC1:"
FMT = PassFormat.HC1.value
ALGORITHMS = frozenset({ES256, PS256})
#: CBOR encoding of tag 61 (CWT), which some issuers wrap around the COSE_Sign1
CWT_TAG_PREFIX = b"\xd8\x3d"
KIND_BY_GROUP = {"v": PassKind.DCC_VACCINATION, "t": PassKind.DCC_TEST, "r": PassKind.DCC_RECOVERY}
TEST_NOT_DETECTED = "260415000"
KID_BYTES = 8
_sha256 = hashlib.sha256
USAGE_BY_KIND = {PassKind.DCC_VACCINATION: "v", PassKind.DCC_TEST: "t", PassKind.DCC_RECOVERY: "r"}


def decode_hc1(text: str) -> Sign1:
    """Unwrap the transport layers into a parsed (unverified) COSE_Sign1."""
    data = inflate(b45decode(strip_prefix(text, PREFIX, FMT), FMT), FMT, required=True)
    return parse_sign1(_untag_cwt(data), FMT)


def _untag_cwt(data: bytes) -> bytes:
    """Drop an outer CWT tag (61) so that a double-tagged message parses like a plain COSE_Sign1."""
    if data[:2] == CWT_TAG_PREFIX:
        return data[2:]
    return data


def verify_signature(msg: Sign1, trust: TrustStore) -> TrustedKey:
    """The DSC that signed ``msg``; UNSUPPORTED_ALGORITHM / UNKNOWN_ISSUER / BAD_SIGNATURE otherwise."""
    check_alg(msg.alg, FMT, ALGORITHMS)
    if msg.kid is not None and len(msg.kid) != KID_BYTES:
        raise PassRejected(Reason.UNKNOWN_ISSUER, f"kid must be {KID_BYTES} bytes, got {len(msg.kid)}", format=FMT)
    return find_signer(msg, trust, SOURCE_DSC, FMT)


def _bad(detail: str) -> PassRejected:
    return PassRejected(Reason.SCHEMA_INVALID, detail, format=FMT)


def _time(value: Any, what: str) -> datetime:
    if type(value) is int and 0 <= value < 2**40:  # the usual case first: an integer NumericDate
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 2**40:
        return datetime.fromtimestamp(value, UTC)
    raise _bad(f"CWT {what} is not a timestamp")


_SCALARS = (str, int, float, bool, type(None))


def plain(value: Any) -> Any:
    """CBOR-decoded data as JSON-like Python (dicts, lists, ISO strings for dates)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {k if type(k) is str else str(k): plain(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, cbor2.CBORTag):
        return plain(value.value)
    return value


def _is_map(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _raw_claims(msg: Sign1) -> tuple[Mapping, Mapping]:
    claims = cbor_loads(msg.payload, FMT, "CWT")
    hcert = claims.get(CLAIM_HCERT) if _is_map(claims) else None
    if not _is_map(hcert) or not _is_map(hcert.get(1)):
        raise PassRejected(Reason.MALFORMED, "CWT is not a claims map with a DCC payload (claim -260/1)",
                           format=FMT)
    return claims, hcert[1]


def read_claims(msg: Sign1) -> tuple[Mapping, dict]:
    """The CWT claims map and the DCC payload (claim -260, key 1) as plain JSON-like data."""
    claims, dcc = _raw_claims(msg)
    return claims, plain(dcc)


def _schema() -> dict:
    return json.loads(resources.files("edge.passes").joinpath("dcc_schema.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def schema_validator() -> jsonschema.protocols.Validator:
    """The reference DCC schema validator (jsonschema; built once): explains failures."""
    schema = _schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)  # like upstream test runs: "format" is annotation only; dates are parsed later


@lru_cache(maxsize=1)
def _compiled_schema() -> Any:
    """The same schema compiled by jsonschema-rs (the fast path, Rust; ~10x fastjsonschema).

    Same draft (2020-12) and the same format rule as the reference validator: annotation only.
    """
    import jsonschema_rs

    return jsonschema_rs.validator_for(_schema(), validate_formats=False)


def _fast_verdict(payload: Any) -> bool | None:
    """The compiled validator's yes/no, or None when the payload holds a value it cannot see as
    JSON (CBOR dates, tags, byte strings, non-text map keys): the caller then converts first."""
    try:
        return bool(_compiled_schema().is_valid(payload))
    except (ValueError, TypeError, OverflowError):
        return None


def validate_payload(dcc: Any) -> None:
    """SCHEMA_INVALID naming the first violation, if the DCC payload breaks the schema.

    The compiled validator decides; jsonschema is only asked for the explanation of a failure.
    """
    if _fast_verdict(dcc):
        return
    dcc = plain(dcc)
    if _fast_verdict(dcc):
        return
    error = jsonschema.exceptions.best_match(schema_validator().iter_errors(dcc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise _bad(f"{where}: {error.message[:160]}")
    # only the compiled validator objects: ECMA-262 patterns, whose "$" (unlike Python's) does not
    # match before a final newline
    try:
        rs_error = next(iter(_compiled_schema().iter_errors(dcc)), None)
    except (ValueError, TypeError, OverflowError):
        rs_error = None
    raise _bad(f"payload breaks the DCC schema: {str(rs_error)[:160]}" if rs_error else "payload breaks the DCC schema")


def checked_payload(msg: Sign1) -> tuple[Mapping, Mapping]:
    """The CWT claims and the schema-checked DCC payload, each decoded once.

    A payload of plain JSON types is checked as decoded (no copy); one holding CBOR-only values
    (dates, tags, byte strings, non-text keys) is checked, and returned, as its ``plain`` view,
    exactly like ``read_claims`` + ``validate_payload``.
    """
    claims, dcc = _raw_claims(msg)
    if _fast_verdict(dcc):
        return claims, dcc
    dcc = plain(dcc)
    validate_payload(dcc)
    return claims, dcc


def check_codes(dcc: Mapping) -> None:
    """UNKNOWN_CODE (a CHECK, not a REFUSE: the shipped value sets may predate the pass) when a
    coded field uses a code the EU value sets do not define."""
    unknown = unknown_codes(dcc)
    if unknown:
        raise PassRejected(Reason.UNKNOWN_CODE, "; ".join(unknown)[:200], format=FMT)


def revocation_keys(issuer: str, uci: str, msg: Sign1) -> tuple[bytes, bytes, bytes]:
    """EU DCC revocation hashes (UCI, COUNTRYCODEUCI, SIGNATURE), each SHA-256 truncated to 16 bytes.

    For ES256 the SIGNATURE hash covers only r (the first half of the signature).
    """
    sig = msg.signature[:32] if msg.alg == ES256 else msg.signature
    uci_bytes = uci.encode()
    return (_sha256(uci_bytes).digest()[:16],
            _sha256(issuer.encode() + uci_bytes).digest()[:16],  # UTF-8 of a concatenation = concatenated UTF-8
            _sha256(sig).digest()[:16])


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        raise _bad(f"{value!r} is not a date") from None


def _credential(claims: Mapping, dcc: dict, msg: Sign1, key: TrustedKey) -> Credential:
    group = "v" if "v" in dcc else "t" if "t" in dcc else "r"  # the schema admits exactly one
    entry = dcc[group][0]
    issuer = claims.get(CLAIM_ISS)
    issuer = issuer if isinstance(issuer, str) else key.issuer
    vaccination = test = recovery = None
    if group == "v":
        vaccination = Vaccination(int(entry["dn"]), int(entry["sd"]), _day(entry["dt"]), entry.get("mp"))
    elif group == "t":
        try:
            taken = datetime.fromisoformat(entry["sc"].replace("Z", "+00:00"))
        except ValueError:
            raise _bad("test sample time is not ISO-8601") from None
        taken = taken if taken.tzinfo else taken.replace(tzinfo=UTC)
        test = TestResult(taken, entry["tr"] == TEST_NOT_DETECTED, entry.get("tt"))
    else:
        recovery = Recovery(_day(entry["fr"]), _day(entry["df"]), _day(entry["du"]))
    uci = entry["ci"]
    risk_keys = revocation_keys(issuer, uci, msg)
    return Credential(
        format=PassFormat.HC1, kind=KIND_BY_GROUP[group], pass_id=uci, issuer=issuer, kid=key.kid,
        # a DCC carries no citizen id: its holder stands in logs for its certificate, the UCI hash
        # (``sync.wire.identifiers.certificate_hash``) that the publisher lists for a listed
        # citizen; never an unkeyed hash of name and birth date, which enumeration reverses
        holder_hash=risk_keys[0], issued_at=_time(claims.get(CLAIM_IAT), "iat"),
        expires_at=_time(claims.get(CLAIM_EXP), "exp"), vaccination=vaccination, test=test, recovery=recovery,
        risk_keys=risk_keys,
    )


def read_hc1(text: str, trust: TrustStore, now: datetime | None = None) -> Credential:
    """Decode, authenticate and schema-check an EU DCC; PassRejected with a reason on any defect."""
    msg = decode_hc1(text)
    key = verify_signature(msg, trust)
    claims, dcc = checked_payload(msg)
    credential = _credential(claims, dcc, msg, key)
    usage = USAGE_BY_KIND[credential.kind]
    if not key.allows_usage(usage):
        raise PassRejected(Reason.ISSUER_KEY_USAGE, f"DSC may sign {sorted(key.usages)}, not {usage!r}",
                           format=FMT)
    check_key_period(key, credential.issued_at, now, FMT)
    check_codes(dcc)  # last: a definite refusal above outranks this doubt
    return credential
