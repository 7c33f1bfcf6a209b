"""Issuing EU Digital COVID Certificates (``HC1:``) with a self-made Document Signer Certificate.

Real DCCs are issued by a country's health authority; this module exists for the demo and the
tests: it makes a DSC (X.509, ES256 or PS256, with the DCC key-usage OIDs) and signs a DCC
payload (schema 1.3.0) exactly as the EU specification lays it out, so the reader is exercised on
the same path as Vietnam's 2022 vaccine passport (issuer VN, PS256).
"""

from __future__ import annotations

import secrets
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from edge.passes.cose import ALG_IDS, sign1
from edge.passes.cwt import CLAIM_EXP, CLAIM_HCERT, CLAIM_IAT, CLAIM_ISS
from edge.passes.trust import DCC_USAGE_OIDS, TrustedKey, kid_for

#: DCC key-usage OIDs (extended key usage of a DSC): may sign test / vaccination / recovery
USAGE_TEST, USAGE_VACCINATION, USAGE_RECOVERY = (DCC_USAGE_OIDS[u] for u in "tvr")


@dataclass(frozen=True)
class DocumentSigner:
    """A DSC and its private key: what a health authority's issuing service holds."""

    country: str
    algorithm: str
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    certificate_der: bytes

    @property
    def kid(self) -> bytes:
        """First 8 bytes of SHA-256 over the certificate's DER, as the EU trust lists use."""
        return kid_for(self.certificate_der)

    @classmethod
    def generate(cls, country: str = "VN", algorithm: str = "PS256", *, not_before: datetime | None = None,
                 valid_days: int = 730, usages: tuple[str, ...] = (USAGE_TEST, USAGE_VACCINATION, USAGE_RECOVERY),
                 organisation: str = "Ministry of Health (demo)") -> DocumentSigner:
        """A self-signed DSC (a demo has no CSCA) with the given DCC key usages (none = unrestricted)."""
        if algorithm == "ES256":
            key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "PS256":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"DCC signers use ES256 or PS256, not {algorithm!r}")
        start = not_before or datetime.now(UTC).replace(microsecond=0)
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"DSC {country} {algorithm}")])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + timedelta(days=valid_days)))
        if usages:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.ObjectIdentifier(oid) for oid in usages]), critical=False)
        certificate = builder.sign(key, hashes.SHA256())
        return cls(country, algorithm, key, certificate.public_bytes(serialization.Encoding.DER))

    def trusted_key(self) -> TrustedKey:
        """The DSC as the trust store holds it."""
        return TrustedKey.from_certificate(self.certificate_der)


def vaccination_payload(*, family_name: str, given_name: str, date_of_birth: date, dose: int, series: int,
                        last_dose: date, country: str = "VN", product: str = "EU/1/20/1528",
                        issuer: str = "Ministry of Health of Viet Nam") -> dict:
    """A DCC 1.3.0 vaccination payload (SARS-CoV-2, mRNA vaccine, the given dose of the series)."""
    uvci = f"URN:UVCI:01:{country}:{secrets.token_hex(8).upper()}"
    return {
        "ver": "1.3.0",
        "nam": {"fn": family_name, "fnt": _icao(family_name), "gn": given_name, "gnt": _icao(given_name)},
        "dob": date_of_birth.isoformat(),
        "v": [{"tg": "840539006", "vp": "1119349007", "mp": product, "ma": "ORG-100030215", "dn": dose,
               "sd": series, "dt": last_dose.isoformat(), "co": country, "is": issuer, "ci": uvci}],
    }


def issue_hc1(signer: DocumentSigner, payload: dict, *, issued_at: datetime | None = None,
              expires_at: datetime | None = None) -> str:
    """Sign a DCC payload as an HCERT: CWT in COSE_Sign1, zlib, base45, ``HC1:`` prefix."""
    issued_at = issued_at or datetime.now(UTC)
    expires_at = expires_at or issued_at + timedelta(days=365)
    claims = {CLAIM_ISS: signer.country, CLAIM_IAT: int(issued_at.timestamp()), CLAIM_EXP: int(expires_at.timestamp()),
              CLAIM_HCERT: {1: payload}}
    cose = sign1(cbor2.dumps(claims), signer.private_key, ALG_IDS[signer.algorithm], signer.kid)
    return "HC1:" + base45.b45encode(zlib.compress(cose, 9)).decode()


_ICAO = str.maketrans({"Đ": "D", "đ": "D", " ": "<", "-": "<"})


def _icao(name: str) -> str:
    """ICAO 9303 transliteration of a (Vietnamese) name: upper-case A-Z and '<'."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", name.translate(_ICAO))
    return "".join(c for c in plain.upper() if c.isascii() and (c.isalpha() or c == "<"))[:80]
