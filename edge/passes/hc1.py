"""EU Digital COVID Certificate (``HC1:``): prefix -> base45 -> zlib -> COSE_Sign1 -> CWT -> DCC payload.

Every CBOR item is read as plain, bounded values before anything looks at it (``codec.bounded``:
no tags, big numbers or odd map keys). ES256 and PS256; the DSC is looked up by kid (protected
header wins, every certificate with the kid is tried), must be valid when the DCC was issued and
now, and its DCC key-usage OIDs (if any) must cover the certificate type; a country-code ``iss``
must be the DSC's country. The payload (claim -260/1) is checked against the official JSON schema
of its own version (``schemas/``); every entry is read and the one that counts decides; the EU
value sets are a separate, last stage.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

from edge.passes.codec import PLAIN_LEAVES, NotPlain, b45decode, cbor_decode, check_plain, inflate, strip_prefix
from edge.passes.cose import ES256, PS256, Sign1, check_alg, parse_sign1
from edge.passes.credential import Credential, PassFormat, PassKind, Recovery, TestResult, Vaccination
from edge.passes.cwt import CLAIM_EXP, CLAIM_HCERT, CLAIM_IAT, CLAIM_ISS
from edge.passes.signing_keys import check_key_period, find_signer
from edge.passes.trust import SOURCE_DSC, TrustedKey, TrustStore
from edge.passes.valuesets import ValueSets, unknown_codes
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: 9999-12-31T23:59:59Z, the last second a datetime can hold
_MAX_TIMESTAMP = 253402300799


def _time(value: Any, what: str) -> datetime:
    """A CWT NumericDate (RFC 8392: an integer or a float; some issuers sign fractions) as an aware
    datetime; SCHEMA_INVALID unless it lies inside datetime's range (years 1 to 9999)."""
    kind = type(value)
    if kind is int and 0 <= value <= _MAX_TIMESTAMP:  # the usual case, C-fast
        return datetime.fromtimestamp(value, UTC)
    if kind is int or kind is float:  # never bool: ``bounded`` has already refused non-finite floats
        try:
            return _EPOCH + timedelta(seconds=value)
        except (OverflowError, ValueError):
            raise _bad(f"CWT {what} lies outside the years 1 to 9999") from None
    raise _bad(f"CWT {what} is not a NumericDate")


def _raw_claims(msg: Sign1) -> tuple[dict, dict]:
    """The CWT claims and the DCC payload, each value checked once (``codec.check_plain``): every
    claim plain CBOR, the payload a JSON document (text keys, text and integers only)."""
    claims = cbor_decode(msg.payload, FMT, "CWT")
    if type(claims) is not dict:
        raise PassRejected(Reason.MALFORMED, "CWT is not a claims map", format=FMT)
    hcert = None
    try:
        for key, value in claims.items():
            key_kind = type(key)
            if key_kind is int and key == CLAIM_HCERT:
                hcert = value
            elif key_kind is int or key_kind is str:
                if type(value) not in PLAIN_LEAVES:
                    check_plain(value)
            else:  # a float or boolean key must never stand for an integer claim
                raise NotPlain("a claim key is neither an integer nor text")
        if type(hcert) is not dict or type(hcert.get(1)) is not dict:
            raise PassRejected(Reason.MALFORMED, "CWT has no DCC payload (claim -260/1)", format=FMT)
        for key, value in hcert.items():
            if type(key) is not int:
                raise NotPlain("a health certificate claim key is not an integer")
            check_plain(value, key == 1)
    except NotPlain as exc:
        raise PassRejected(Reason.MALFORMED, f"CWT: {exc.args[0]}", format=FMT) from None
    return claims, hcert[1]


def read_claims(msg: Sign1) -> tuple[dict, dict]:
    """The CWT claims map and the DCC payload (claim -260, key 1), both plain and bounded."""
    return _raw_claims(msg)


#: (major, minor) of ``ver`` -> the schema file of that release (see schemas/SOURCES.md)
SCHEMA_FILES = {(1, 0): "dcc-1.1.0.json", (1, 1): "dcc-1.1.0.json", (1, 2): "dcc-1.2.1.json",
                (1, 3): "dcc-1.3.1.json"}
#: the newest schema: for 1.3.2 and later versions, and for a ``ver`` that names no release
NEWEST_SCHEMA = "dcc-1.3.2.json"
_VERSION = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


def schema_file(version: Any) -> str:
    """The schema a payload of DCC schema version ``version`` is checked against."""
    known = _SCHEMA_BY_VERSION.get(version) if type(version) is str else None
    if known is not None:
        return known
    match = _VERSION.fullmatch(version) if type(version) is str else None
    if match is None:
        return NEWEST_SCHEMA  # whose own "ver" pattern then names the defect
    major, minor, patch = (int(part) for part in match.groups())
    if (major, minor) == (1, 3) and patch >= 2:
        return NEWEST_SCHEMA
    return SCHEMA_FILES.get((major, minor), NEWEST_SCHEMA)


#: the versions issuers use, looked up without a regular expression (the common case)
_SCHEMA_BY_VERSION = {"1.0.0": "dcc-1.1.0.json", "1.0.1": "dcc-1.1.0.json", "1.1.0": "dcc-1.1.0.json",
                      "1.2.0": "dcc-1.2.1.json", "1.2.1": "dcc-1.2.1.json", "1.3.0": "dcc-1.3.1.json",
                      "1.3.1": "dcc-1.3.1.json", "1.3.2": NEWEST_SCHEMA}


@lru_cache(maxsize=8)
def _schema(name: str) -> dict:
    return json.loads(resources.files("edge.passes").joinpath("schemas", name).read_text(encoding="utf-8"))


@lru_cache(maxsize=8)
def _compiled_schema(name: str = NEWEST_SCHEMA) -> Any:
    """One schema file compiled by jsonschema-rs (Rust; ~10x fastjsonschema). Draft 2020-12;
    "format" is an annotation only, as in upstream's runner (dates are parsed by the reader)."""
    import jsonschema_rs

    return jsonschema_rs.validator_for(_schema(name), validate_formats=False)


def compile_schemas() -> None:
    """Compile every schema now (the daemon's warm-up), not on the first pass of each version."""
    for name in {*SCHEMA_FILES.values(), NEWEST_SCHEMA}:
        _compiled_schema(name)


def validate_payload(dcc: Any) -> None:
    """SCHEMA_INVALID naming the first violation (where, and which rule; never the value), if the
    DCC payload breaks the schema of its own version (``ver``).

    jsonschema-rs decides and explains: its first error costs microseconds even for a payload
    built to have hundreds (the pure-Python explanation took 30 ms for a 300-entry group).
    """
    name = schema_file(dcc.get("ver") if type(dcc) is dict else None)
    compiled = _compiled_schema(name)
    if compiled.is_valid(dcc):
        # before 1.3 the schema itself lets v, t and r stand side by side; the HCERT spec (and
        # upstream's own test runner) admit exactly one group per certificate
        if ("v" in dcc) + ("t" in dcc) + ("r" in dcc) != 1:
            raise _bad("a certificate holds exactly one of v, t and r")
        return
    error = next(iter(compiled.iter_errors(dcc)), None)
    where = "/".join(str(p) for p in error.instance_path)[:80] if error is not None else ""
    rule = type(error.kind).__name__ if error is not None else "a"
    raise _bad(f"{where or '(root)'}: {rule} rule of schema {name} not met")


def checked_payload(msg: Sign1) -> tuple[dict, dict]:
    """The CWT claims and the DCC payload, bounded and checked against its version's schema."""
    claims, dcc = _raw_claims(msg)
    validate_payload(dcc)
    return claims, dcc


def check_codes(dcc: Mapping, value_sets: ValueSets | None = None) -> None:
    """UNKNOWN_CODE (a CHECK, not a REFUSE: the installed value sets may predate the pass) when a
    coded field uses a code the EU value sets do not define. A stage apart from the schema."""
    unknown = unknown_codes(dcc, value_sets)
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


def _day(value: Any, where: str) -> date | None:
    """An ISO date (a date-time's date part); SCHEMA_INVALID naming the field, never its value."""
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except (ValueError, TypeError):
        raise _bad(f"{where} is not a date") from None


def _instant(value: Any, where: str) -> datetime:
    """An ISO date-time as an aware UTC datetime (no zone: UTC), inside datetime's range."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        raise _bad(f"{where} is not an ISO 8601 date-time") from None


def _vaccination(entries: list[dict]) -> tuple[int, Vaccination]:
    """The dose that counts: the latest (by date, then dose number) of every entry."""
    if len(entries) == 1:  # the usual case (1.3 allows no other)
        entry = entries[0]
        return 0, Vaccination(entry["dn"], entry["sd"], _day(entry["dt"], "v/0/dt"), entry.get("mp"))
    read = [((_day(e["dt"], f"v/{i}/dt") or date.min, e["dn"]), i) for i, e in enumerate(entries)]
    (last_dose, _), index = max(read)
    entry = entries[index]
    return index, Vaccination(entry["dn"], entry["sd"], last_dose, entry.get("mp"))


def _test(entries: list[dict]) -> tuple[int, TestResult]:
    """The test that counts: the latest sample of every entry."""
    taken, index = max((_instant(e["sc"], f"t/{i}/sc"), i) for i, e in enumerate(entries))
    entry = entries[index]
    return index, TestResult(taken, entry["tr"] == TEST_NOT_DETECTED, entry.get("tt"))


def _recovery(entries: list[dict], now: datetime | None) -> tuple[int, Recovery]:
    """The recovery that counts: one valid today if any entry is (the longest-running of them),
    else the one valid until the latest day."""
    today = now.date() if now is not None else None
    read = []
    for i, e in enumerate(entries):
        statement = Recovery(_day(e["fr"], f"r/{i}/fr"), _day(e["df"], f"r/{i}/df"), _day(e["du"], f"r/{i}/du"))
        valid_now = (today is not None and (statement.valid_from or date.min) <= today
                     <= (statement.valid_until or date.max))
        read.append(((valid_now, statement.valid_until or date.min), i, statement))
    _, index, statement = max(read, key=lambda item: (item[0], -item[1]))
    return index, statement


def _credential(claims: Mapping, dcc: dict, msg: Sign1, key: TrustedKey, now: datetime | None) -> Credential:
    """The pass as the policy reads it: every entry read, the one that counts decides."""
    group = "v" if "v" in dcc else "t" if "t" in dcc else "r"  # the schema admits exactly one group
    entries = dcc[group]
    vaccination = test = recovery = None
    if group == "v":
        index, vaccination = _vaccination(entries)
    elif group == "t":
        index, test = _test(entries)
    else:
        index, recovery = _recovery(entries, now)
    issuer = issuer_of(claims, key)
    # every certificate identifier in the pass meets the risk and revocation lists, not only the
    # one that counts: a listed one anywhere refuses the pass
    risk_keys = revocation_keys(issuer, entries[index]["ci"], msg)
    if len(entries) > 1:
        more = list(risk_keys)
        for i, entry in enumerate(entries):
            if i != index:
                more.extend(k for k in revocation_keys(issuer, entry["ci"], msg) if k not in more)
        risk_keys = tuple(more)
    return Credential(
        format=PassFormat.HC1, kind=KIND_BY_GROUP[group], pass_id=entries[index]["ci"], issuer=issuer, kid=key.kid,
        # a DCC carries no citizen id: its holder stands in logs for its certificate, the UCI hash
        # (``sync.wire.identifiers.certificate_hash``) that the publisher lists for a listed
        # citizen; never an unkeyed hash of name and birth date, which enumeration reverses
        holder_hash=risk_keys[0], issued_at=_time(claims.get(CLAIM_IAT), "iat"),
        expires_at=_time(claims.get(CLAIM_EXP), "exp"), vaccination=vaccination, test=test, recovery=recovery,
        risk_keys=risk_keys,
    )


#: what an ``iss`` naming a country looks like (ISO 3166-1 alpha-2; the HCERT spec's "MAY hold")
_COUNTRY_CODE = re.compile(r"[A-Z]{2}")


def check_issuer_country(claims: Mapping, key: TrustedKey) -> None:
    """ISSUER_COUNTRY_MISMATCH when the CWT ``iss`` claim names another country than the signing
    certificate: a document signer of one country must not issue another country's passes.

    The HCERT spec makes ``iss`` optional and says it MAY hold the issuing country's code: an
    absent ``iss``, or one that names no country (an authority's name), is not compared; nor is
    a certificate whose subject names no country (test signers). Either way the pass is read as
    the certificate's country's (``issuer_of``), never as the one it claims."""
    issuer = claims.get(CLAIM_ISS)
    if key.country is None or type(issuer) is not str or not _COUNTRY_CODE.fullmatch(issuer):
        return
    if issuer != key.country:
        raise PassRejected(Reason.ISSUER_COUNTRY_MISMATCH,
                           f"iss claim names another country than the signing certificate's {key.country[:8]}",
                           format=FMT)


def issuer_of(claims: Mapping, key: TrustedKey) -> str:
    """The issuing country a pass is read (and its revocation keys computed) as: the signing
    certificate's, the ``iss`` claim only for a certificate that names no country."""
    if key.country is not None:
        return key.country
    issuer = claims.get(CLAIM_ISS)
    return issuer if type(issuer) is str else key.issuer


def read_hc1(text: str, trust: TrustStore, now: datetime | None = None,
             value_sets: ValueSets | None = None) -> Credential:
    """Decode, authenticate and schema-check an EU DCC; PassRejected with a reason on any defect.
    ``value_sets``: the installed EU value sets (the shipped ones when None)."""
    msg = decode_hc1(text)
    key = verify_signature(msg, trust)
    claims, dcc = checked_payload(msg)
    check_issuer_country(claims, key)
    credential = _credential(claims, dcc, msg, key, now)
    usage = USAGE_BY_KIND[credential.kind]
    if not key.allows_usage(usage):
        raise PassRejected(Reason.ISSUER_KEY_USAGE, f"DSC may sign {sorted(key.usages)}, not {usage}",
                           format=FMT)
    check_key_period(key, credential.issued_at, now, FMT)
    check_codes(dcc, value_sets)  # last: a definite refusal above outranks this doubt (a separate stage)
    return credential
