"""Signed EU DCCs built the way an attacker (or a sloppy issuer) would, through the device path.

Every pass here is signed by a trusted document signer (or a leaked key): the defence is the
reader, not the signature. Each case refused or read wrongly before the reader converted CBOR
to plain, bounded values and read DCCs as the reference verifiers read them.
"""

from __future__ import annotations

import zlib
from datetime import UTC, date, datetime, timedelta

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from edge.devtools.hc1_issuer import DocumentSigner, vaccination_payload
from edge.devtools.memory_risk import MemoryRiskList
from edge.lists.policy import default_policy
from edge.passes import hc1
from edge.passes.cose import ALG_IDS, ES256, HDR_ALG, HDR_KID, sign1
from edge.passes.credential import PassKind
from edge.passes.trust import TrustedKey, TrustStore
from edge.scan.clock import FixedClock
from edge.scan.verifier import Verifier
from edge.verdict import Decision, PassRejected, Reason, Verdict

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer() -> DocumentSigner:
    return DocumentSigner.generate("VN", "ES256", not_before=NOW - timedelta(days=60))


def _payload(**changes) -> dict:
    payload = vaccination_payload(family_name="Nguyễn", given_name="Văn An", date_of_birth=date(1985, 4, 2),
                                  dose=2, series=2, last_dose=date(2026, 1, 10))
    payload["v"][0].update(changes)
    return payload


def _claims(payload: object, **changes) -> dict:
    claims = {1: "VN", 6: int((NOW - timedelta(days=1)).timestamp()), 4: int((NOW + timedelta(days=300)).timestamp()),
              -260: {1: payload}}
    for key, value in changes.items():
        claims[{"iss": 1, "exp": 4, "iat": 6}[key]] = value
    return claims


def _qr(cose: bytes, *, after_zlib: bytes = b"") -> str:
    return "HC1:" + base45.b45encode(zlib.compress(cose, 9) + after_zlib).decode()


def _signed(signer: DocumentSigner, claims: object, *, after_cose: bytes = b"", after_zlib: bytes = b"") -> str:
    """A DCC whose CWT is exactly ``cbor2.dumps(claims)`` (tags, big numbers, odd keys and all)."""
    body = claims if isinstance(claims, bytes) else cbor2.dumps(claims)
    return _qr(sign1(body, signer.private_key, ALG_IDS[signer.algorithm], signer.kid) + after_cose,
               after_zlib=after_zlib)


def _verify(signer: DocumentSigner, text: str) -> Verdict:
    verifier = Verifier(trust=TrustStore([signer.trusted_key()]), risk=MemoryRiskList({}, published_at=NOW),
                        policy=default_policy(), clock=FixedClock(NOW))
    return verifier.verify(text)


def _refused(verdict: Verdict, reason: Reason) -> None:
    assert (verdict.decision, verdict.reason) == (Decision.REFUSE, reason), verdict


def test_an_honest_pass_passes(signer: DocumentSigner) -> None:
    verdict = _verify(signer, _signed(signer, _claims(_payload())))
    assert (verdict.decision, verdict.reason) == (Decision.PASS, Reason.OK), verdict


def test_2000_byte_integer_alg_in_a_short_qr_is_refused(signer: DocumentSigner) -> None:
    """A bignum alg made Python's int-to-text limit raise while the message was formatted."""
    protected = cbor2.dumps({HDR_ALG: 2 ** 16000 - 1, HDR_KID: signer.kid})
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, b"", b""]))
    text = _qr(cose)
    assert len(text) < 120  # it compresses to a tiny QR
    verdict = _verify(signer, text)
    _refused(verdict, Reason.MALFORMED)
    assert "tag 2" in verdict.detail


def test_decimal_fraction_dose_is_refused_before_any_work(signer: DocumentSigner) -> None:
    """dn = 1E+999999 (tag 4) passed the schema as an integer >= 1 and took 42 s to turn into an int."""
    verdict = _verify(signer, _signed(signer, _claims(_payload(dn=cbor2.CBORTag(4, [999999, 1])))))
    _refused(verdict, Reason.MALFORMED)
    assert "tag 4" in verdict.detail


@pytest.mark.parametrize("exp", [2 ** 40 - 1, 1e12, -(2 ** 63), 2 ** 64 - 1])
def test_expiry_beyond_year_9999_is_refused(signer: DocumentSigner, exp: float) -> None:
    verdict = _verify(signer, _signed(signer, _claims(_payload(), exp=exp)))
    _refused(verdict, Reason.SCHEMA_INVALID)
    assert "years 1 to 9999" in verdict.detail


def test_fractional_times_as_issuers_sign_them_are_read(signer: DocumentSigner) -> None:
    """HU signs iat/exp as floats: a NumericDate may be one (RFC 8392)."""
    claims = _claims(_payload(), iat=(NOW - timedelta(days=1)).timestamp() + 0.5,
                     exp=(NOW + timedelta(days=30)).timestamp() + 0.25)
    assert _verify(signer, _signed(signer, claims)).reason == Reason.OK


@pytest.mark.parametrize("where", ["dn", "sd"])
def test_integers_of_thousands_of_digits_are_refused(signer: DocumentSigner, where: str) -> None:
    verdict = _verify(signer, _signed(signer, _claims(_payload(**{where: 10 ** 3000}))))
    _refused(verdict, Reason.MALFORMED)


def test_huge_integer_claim_is_refused(signer: DocumentSigner) -> None:
    verdict = _verify(signer, _signed(signer, {**_claims(_payload()), 99: -(10 ** 5000)}))
    _refused(verdict, Reason.MALFORMED)


@pytest.mark.parametrize("key", [1.0, True])
def test_map_key_that_equals_1_is_not_claim_1(signer: DocumentSigner, key: object) -> None:
    """cbor2 keeps Python's key semantics (1 == 1.0 == True): {-260: {1.0: dcc}} was read as the DCC."""
    claims = _claims(_payload())
    claims[-260] = {key: claims[-260][1]}
    verdict = _verify(signer, _signed(signer, claims))
    _refused(verdict, Reason.MALFORMED)
    assert "map key" in verdict.detail or "claim key" in verdict.detail


def test_float_where_the_dcc_has_an_integer_is_refused(signer: DocumentSigner) -> None:
    verdict = _verify(signer, _signed(signer, _claims(_payload(dn=2.0))))
    _refused(verdict, Reason.MALFORMED)
    assert "float" in verdict.detail


@pytest.mark.parametrize("value", [cbor2.CBORTag(0, "2026-01-10T00:00:00Z"), cbor2.CBORTag(28, "x"),
                                   cbor2.CBORTag(99, "x"), cbor2.CBORSimpleValue(99), cbor2.undefined, b"\x00"])
def test_cbor_only_values_in_the_payload_are_refused(signer: DocumentSigner, value: object) -> None:
    verdict = _verify(signer, _signed(signer, _claims(_payload(dt=value))))
    _refused(verdict, Reason.MALFORMED)


def test_attacker_text_is_never_quoted_in_a_message(signer: DocumentSigner) -> None:
    """A duplicate key's text, a refused tag's payload: none of it reaches the verdict detail."""
    marker = "ZZ-ATTACKER-" * 20
    body = cbor2.dumps(_claims(_payload(ci=cbor2.CBORTag(99, marker))))
    verdict = _verify(signer, _signed(signer, body))
    assert verdict.reason == Reason.MALFORMED and "ATTACKER" not in (verdict.detail or "")
    duplicate = b"\xa2" + cbor2.dumps(marker) + b"\x01" + cbor2.dumps(marker) + b"\x02"
    with pytest.raises(PassRejected) as info:
        hc1.read_claims(hc1.Sign1(b"", ES256, signer.kid, duplicate, b""))
    assert "ATTACKER" not in info.value.detail and "duplicate" in info.value.detail


def test_bytes_after_the_cose_item_are_refused(signer: DocumentSigner) -> None:
    """One pass, one text: trailing bytes made many texts of one signed pass."""
    verdict = _verify(signer, _signed(signer, _claims(_payload()), after_cose=b"\x00"))
    _refused(verdict, Reason.MALFORMED)
    assert "after the COSE item" in verdict.detail


def test_bytes_after_the_zlib_stream_are_refused(signer: DocumentSigner) -> None:
    verdict = _verify(signer, _signed(signer, _claims(_payload()), after_zlib=b"junk"))
    _refused(verdict, Reason.MALFORMED)
    assert "after the zlib stream" in verdict.detail


def test_iss_of_another_country_is_refused(signer: DocumentSigner) -> None:
    verdict = _verify(signer, _signed(signer, _claims(_payload(), iss="FR")))
    _refused(verdict, Reason.ISSUER_COUNTRY_MISMATCH)


def test_iss_naming_an_authority_is_read_as_the_certificates_country(signer: DocumentSigner) -> None:
    """GE's passes put a ministry's name in iss (the HCERT spec only says it MAY hold a country code)."""
    text = _signed(signer, _claims(_payload(), iss="Ministry of Health of Viet Nam"))
    cred = hc1.read_hc1(text, TrustStore([signer.trusted_key()]), NOW)
    assert cred.issuer == "VN"


def test_signature_by_a_p384_key_under_an_es256_header_is_an_unsupported_algorithm() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"), x509.NameAttribute(NameOID.COMMON_NAME, "P384")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - timedelta(days=10)).not_valid_after(NOW + timedelta(days=10))
            .sign(key, hashes.SHA256()))
    trusted = TrustedKey.from_certificate(cert.public_bytes(serialization.Encoding.DER))
    protected = cbor2.dumps({HDR_ALG: ES256, HDR_KID: trusted.kid})
    payload = cbor2.dumps(_claims(_payload()))
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    cose = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")]))
    with pytest.raises(PassRejected) as info:
        hc1.read_hc1(_qr(cose), TrustStore([trusted]), NOW)
    assert info.value.reason == Reason.UNSUPPORTED_ALGORITHM and "secp384r1" in info.value.detail
    forged = cose[:-10] + bytes(10)  # the same message with a broken signature: forged, not unsupported
    with pytest.raises(PassRejected) as info:
        hc1.read_hc1(_qr(forged), TrustStore([trusted]), NOW)
    assert info.value.reason == Reason.BAD_SIGNATURE


def test_version_1_2_1_with_two_doses_is_read_and_the_latest_dose_counts(signer: DocumentSigner) -> None:
    """1.2.1 has no maxItems on v: dose 1 and dose 2 in one pass; the reader took [0] (dose 1 of 2)."""
    payload = _payload(dn=1, dt="2026-01-10")
    payload["ver"] = "1.2.1"
    second = dict(payload["v"][0], dn=2, dt="2026-02-10", ci="URN:UVCI:01:VN:SECOND")
    payload["v"] = [payload["v"][0], second]
    text = _signed(signer, _claims(payload))
    cred = hc1.read_hc1(text, TrustStore([signer.trusted_key()]), NOW)
    assert cred.vaccination is not None and (cred.vaccination.doses, cred.vaccination.last_dose) == (
        2, date(2026, 2, 10))
    assert cred.pass_id == "URN:UVCI:01:VN:SECOND"
    assert len(cred.risk_keys) == 5  # UCI and country+UCI of both entries, and the signature
    assert _verify(signer, text).reason == Reason.OK
    payload["ver"] = "1.3.0"  # the same two entries break the 1.3 schema (maxItems 1)
    _refused(_verify(signer, _signed(signer, _claims(payload))), Reason.SCHEMA_INVALID)


def test_version_1_3_0_test_without_testing_centre_is_read(signer: DocumentSigner) -> None:
    payload = _payload()
    entry = payload.pop("v")[0]
    payload["t"] = [{"tg": "840539006", "tt": "LP6464-4", "nm": "PCR", "sc": "2026-05-31T08:00:00Z",
                     "tr": "260415000", "co": "VN", "is": entry["is"], "ci": entry["ci"]}]
    cred = hc1.read_hc1(_signed(signer, _claims(payload)), TrustStore([signer.trusted_key()]), NOW)
    assert cred.kind == PassKind.DCC_TEST and cred.test is not None and cred.test.negative
    payload["ver"] = "1.2.1"  # tc is required before 1.3
    with pytest.raises(PassRejected) as info:
        hc1.read_hc1(_signed(signer, _claims(payload)), TrustStore([signer.trusted_key()]), NOW)
    assert info.value.reason == Reason.SCHEMA_INVALID


def test_latest_test_counts(signer: DocumentSigner) -> None:
    payload = _payload()
    entry = payload.pop("v")[0]
    payload["ver"] = "1.2.1"
    base = {"tg": "840539006", "tt": "LP6464-4", "tc": "Lab", "co": "VN", "is": entry["is"]}
    payload["t"] = [dict(base, sc="2026-05-31T08:00:00+07:00", tr="260373001", ci="URN:UVCI:01:VN:POS"),
                    dict(base, sc="2026-05-20T08:00:00Z", tr="260415000", ci="URN:UVCI:01:VN:NEG")]
    cred = hc1.read_hc1(_signed(signer, _claims(payload)), TrustStore([signer.trusted_key()]), NOW)
    assert cred.test is not None and not cred.test.negative and cred.pass_id == "URN:UVCI:01:VN:POS"


def test_valid_recovery_counts(signer: DocumentSigner) -> None:
    payload = _payload()
    entry = payload.pop("v")[0]
    payload["ver"] = "1.2.1"
    base = {"tg": "840539006", "co": "VN", "is": entry["is"]}
    payload["r"] = [dict(base, fr="2026-05-01", df="2026-05-12", du="2026-10-01", ci="URN:UVCI:01:VN:NOW"),
                    dict(base, fr="2025-01-01", df="2025-01-12", du="2025-06-01", ci="URN:UVCI:01:VN:OLD")]
    payload["r"].reverse()
    cred = hc1.read_hc1(_signed(signer, _claims(payload)), TrustStore([signer.trusted_key()]), NOW)
    assert cred.pass_id == "URN:UVCI:01:VN:NOW" and cred.recovery is not None


@pytest.mark.parametrize("changes", [{"dt": "9999-12-31"}, {"dt": "0001-01-01"}])
def test_dates_at_the_ends_of_the_calendar_get_a_verdict(signer: DocumentSigner, changes: dict) -> None:
    """A signed last dose of 9999-12-31 overflowed the policy's date arithmetic (internal_error)."""
    verdict = _verify(signer, _signed(signer, _claims(_payload(**changes))))
    assert verdict.reason != Reason.INTERNAL_ERROR, verdict
    if changes["dt"] == "9999-12-31":  # a dose in the future has not been waited for
        _refused(verdict, Reason.INSUFFICIENT_VACCINATION)


@pytest.mark.parametrize("sc", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_test_times_outside_the_calendar_are_refused(signer: DocumentSigner, sc: str) -> None:
    payload = _payload()
    entry = payload.pop("v")[0]
    payload["t"] = [{"tg": "840539006", "tt": "LP6464-4", "sc": sc, "tr": "260415000", "co": "VN",
                     "is": entry["is"], "ci": entry["ci"]}]
    _refused(_verify(signer, _signed(signer, _claims(payload))), Reason.SCHEMA_INVALID)


def test_cp1_times_past_9999_are_refused() -> None:
    """Our own format had the same bound: 2**40 - 1 seconds overflowed datetime (internal_error)."""
    from edge.passes.cp1 import CLAIM_CP1, K_HOLDER, K_KIND
    from edge.passes.issuer import IssuerKey

    key = IssuerKey.generate("HN", "EdDSA", not_before=NOW - timedelta(days=1))
    claims = {1: "HN", 6: int(NOW.timestamp()), 4: 2 ** 40 - 1, 7: b"pass-1",
              CLAIM_CP1: {K_KIND: "resident", K_HOLDER: bytes(16)}}
    cose = sign1(cbor2.dumps(claims), key.private_key, key.alg_id, key.kid)
    text = "CP1:" + base45.b45encode(zlib.compress(cose, 9)).decode()
    verifier = Verifier(trust=TrustStore([key.trusted_key()]), risk=MemoryRiskList({}, published_at=NOW),
                        policy=default_policy(), clock=FixedClock(NOW))
    _refused(verifier.verify(text), Reason.SCHEMA_INVALID)
