"""A DSC's key usage fails closed: non-DER extensions keep their restriction, unreadable usage is refused.

The certificates are built for real: ``cryptography`` only writes strict DER, so the test signs a
hand-edited TBSCertificate (pyasn1's DER encoder, the non-DER bytes inside the extension value),
exactly as a real document signer's certificate reaches the trust list.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280

from edge.devtools.hc1_issuer import USAGE_TEST, USAGE_VACCINATION, DocumentSigner, issue_hc1, vaccination_payload
from edge.devtools.memory_risk import MemoryRiskList
from edge.lists.policy import default_policy
from edge.passes.trust import TrustedKey, build_trust_envelope, kid_for, load_trust_file
from edge.scan.clock import FixedClock
from edge.scan.verifier import Verifier
from edge.verdict import Decision, Reason
from sync.wire.envelope import sign_envelope

NOW = datetime.now(UTC).replace(microsecond=0)
#: BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, ... } with the default spelled out (BER, not DER)
EXPLICIT_CA_FALSE = b"\x30\x03\x01\x01\x00"


def _resign(signer: DocumentSigner, extra: list[tuple[univ.ObjectIdentifier, bytes]]) -> DocumentSigner:
    """The signer's certificate with ``extra`` raw extensions appended, signed again by its key."""
    cert, _ = der_decoder.decode(signer.certificate_der, asn1Spec=rfc5280.Certificate())
    tbs = cert["tbsCertificate"]
    for oid, value in extra:
        ext = rfc5280.Extension()
        ext["extnID"] = oid
        ext["critical"] = True
        ext["extnValue"] = univ.OctetString(value)
        tbs["extensions"].append(ext)
    assert isinstance(signer.private_key, ec.EllipticCurvePrivateKey)
    signature = signer.private_key.sign(der_encoder.encode(tbs), ec.ECDSA(hashes.SHA256()))
    cert["signature"] = univ.BitString.fromOctetString(signature)
    return DocumentSigner(signer.country, signer.algorithm, signer.private_key, der_encoder.encode(cert))


def _test_only_signer_with_encoded_default() -> DocumentSigner:
    signer = DocumentSigner.generate("VN", "ES256", usages=(USAGE_TEST,), not_before=NOW - timedelta(days=30))
    return _resign(signer, [(rfc5280.id_ce_basicConstraints, EXPLICIT_CA_FALSE)])


def _vaccination_pass(signer: DocumentSigner) -> str:
    payload = vaccination_payload(family_name="Nguyễn", given_name="Văn An", date_of_birth=date(1990, 1, 2),
                                  dose=2, series=2, last_dose=(NOW - timedelta(days=60)).date())
    return issue_hc1(signer, payload, issued_at=NOW - timedelta(days=1))


def _device_verifier(tmp_path: Path, signers: list[DocumentSigner]) -> Verifier:
    """A verifier over a trust list as the device installs it: a signed file on disk, opened at load."""
    publisher = Ed25519PrivateKey.generate()
    blob = build_trust_envelope([TrustedKey.from_certificate(s.certificate_der) for s in signers], publisher, 3)
    (tmp_path / "trust.cpenv").write_bytes(blob)
    trust = load_trust_file(tmp_path / "trust.cpenv", [publisher.public_key()])
    return Verifier(trust=trust, risk=MemoryRiskList({}, version=1, published_at=NOW - timedelta(hours=1)),
                    policy=default_policy(), clock=FixedClock(NOW))


def test_certificate_really_is_rejected_by_strict_parsing() -> None:
    der = _test_only_signer_with_encoded_default().certificate_der
    with pytest.raises(ValueError, match="EncodedDefault"):
        _ = x509.load_der_x509_certificate(der).extensions


def test_test_only_signer_with_non_der_basic_constraints_cannot_sign_a_passing_vaccination(tmp_path: Path) -> None:
    """The attack: today the usage restriction is dropped and this vaccination pass gets PASS."""
    signer = _test_only_signer_with_encoded_default()
    verdict = _device_verifier(tmp_path, [signer]).verify(_vaccination_pass(signer))
    assert verdict.decision != Decision.PASS
    assert (verdict.decision, verdict.reason) == (Decision.REFUSE, Reason.ISSUER_KEY_USAGE)


def test_vaccination_signer_with_non_der_basic_constraints_still_verifies(tmp_path: Path) -> None:
    """Lenient reading keeps such real signers working for the kinds they may sign."""
    signer = DocumentSigner.generate("VN", "ES256", usages=(USAGE_VACCINATION,), not_before=NOW - timedelta(days=30))
    signer = _resign(signer, [(rfc5280.id_ce_basicConstraints, EXPLICIT_CA_FALSE)])
    key = TrustedKey.from_certificate(signer.certificate_der)
    assert key.usages == frozenset("v") and key.read_leniently
    verdict = _device_verifier(tmp_path, [signer]).verify(_vaccination_pass(signer))
    assert verdict.reason != Reason.ISSUER_KEY_USAGE and verdict.decision == Decision.PASS


def test_unreadable_usage_is_refused_and_logged_once_per_trust_list_load(tmp_path: Path, caplog) -> None:
    """Two DSCs whose usage no parser can read: neither is trusted; one warning for the whole load."""
    broken_eku = b"\x30\x05\x06\x03\x2b"  # SEQUENCE OF OID, cut short
    signers = [_resign(DocumentSigner.generate("VN", "ES256", usages=()),
                       [(rfc5280.id_ce_basicConstraints, EXPLICIT_CA_FALSE), (rfc5280.id_ce_extKeyUsage, broken_eku)])
               for _ in range(2)]
    good = DocumentSigner.generate("VN", "ES256", not_before=NOW - timedelta(days=30))
    publisher = Ed25519PrivateKey.generate()
    # the bundle is built from raw records: the publisher's builder cannot open these certificates either
    records = [{"src": "dsc", "kid": kid_for(s.certificate_der), "der": s.certificate_der} for s in signers]
    records.append(TrustedKey.from_certificate(good.certificate_der).to_record())
    blob = sign_envelope("trust", 5, cbor2.dumps({"keys": records, "revoked": []}), publisher)
    (tmp_path / "trust.cpenv").write_bytes(blob)
    with caplog.at_level(logging.INFO, logger="edge.passes.trust"):
        store = load_trust_file(tmp_path / "trust.cpenv", [publisher.public_key()])
    assert len(store) == 1 and store.candidates(kid_for(good.certificate_der))
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "count=2" in warnings[0].getMessage()
    assert "refused" in warnings[0].getMessage()

    verifier = Verifier(trust=store, risk=MemoryRiskList({}, version=1, published_at=NOW),
                        policy=default_policy(), clock=FixedClock(NOW))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge.passes.trust"):
        for signer in signers:
            verdict = verifier.verify(_vaccination_pass(signer))
            assert (verdict.decision, verdict.reason) == (Decision.REFUSE, Reason.UNKNOWN_ISSUER)
    assert not caplog.records  # nothing more per scan
