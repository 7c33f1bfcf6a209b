"""The trust store: which keys may sign passes, and which passes their issuers revoked.

Two sources of keys share one kid index (several keys per kid are allowed; the verifier tries
each): CP1 issuer public keys with explicit validity periods, and EU DCC Document Signer
Certificates (X.509 DER) whose validity and optional DCC key-usage OIDs come from the
certificate. The store travels as a signed envelope of kind ``trust`` (sync/wire/envelope.py).

A DSC's usage restriction fails closed: real signers ship extensions that strict DER parsing
rejects (e.g. a BasicConstraints that spells out the default ``cA=FALSE``), so the extended key
usage is then read with a lenient BER decoder (pyasn1); a certificate whose usage cannot be read
at all is refused, never trusted for every kind.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.error import PyAsn1Error
from pyasn1_modules import rfc5280

from edge.passes.cose import ALG_IDS, ALG_NAMES, PublicKey, key_matches_alg
from sync.wire.envelope import EnvelopeError, open_envelope, sign_envelope
from sync.wire.errors import CheckpointError

log = logging.getLogger(__name__)

ENVELOPE_KIND = "trust"
SOURCE_CP1 = "cp1"
SOURCE_DSC = "dsc"
#: DCC key usages of a document signer (extended key usage OIDs): t = test, v = vaccination, r = recovery
DCC_USAGE_OIDS: dict[str, str] = {
    "t": "1.3.6.1.4.1.1847.2021.1.1", "v": "1.3.6.1.4.1.1847.2021.1.2", "r": "1.3.6.1.4.1.1847.2021.1.3"}
#: every OID read as a usage: the specified ones and the ".0." variants some early signers used
USAGE_OIDS: dict[str, str] = {
    **{oid: usage for usage, oid in DCC_USAGE_OIDS.items()},
    **{oid.replace(".1847.", ".0.1847."): usage for usage, oid in DCC_USAGE_OIDS.items()},
}


class TrustError(CheckpointError, ValueError):
    """A trust bundle or one of its entries cannot be used."""


def kid_for(der: bytes) -> bytes:
    """The DCC key id: the first 8 bytes of SHA-256 over the DER (certificate or SPKI)."""
    return hashlib.sha256(der).digest()[:8]


@dataclass(frozen=True)
class TrustedKey:
    """One public key allowed to sign passes, with the period and usages it is valid for."""

    kid: bytes
    issuer: str
    source: str
    public_key: PublicKey = field(repr=False, compare=False)
    der: bytes = field(repr=False)
    not_before: datetime | None = None
    not_after: datetime | None = None
    #: DCC usages this key may sign ("t", "v", "r"); empty means any
    usages: frozenset[str] = frozenset()
    #: CP1 only: the one COSE algorithm this key signs with
    algorithm: str | None = None
    #: DSC only: strict DER parsing rejected an extension, so the usages were read leniently
    read_leniently: bool = field(default=False, compare=False)
    #: DSC only: the country (C) its certificate's subject names, None when it names none
    country: str | None = None
    #: COSE algorithm ids this key's type, curve and size fit (worked out once, at load)
    algorithms: frozenset[int] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fits = frozenset(alg for alg in ALG_NAMES if key_matches_alg(self.public_key, alg))
        object.__setattr__(self, "algorithms", fits)

    def valid_at(self, when: datetime) -> bool:
        """Whether ``when`` lies inside the key's validity period."""
        return ((self.not_before is None or when >= self.not_before)
                and (self.not_after is None or when <= self.not_after))

    def allows_usage(self, usage: str) -> bool:
        return not self.usages or usage in self.usages

    @classmethod
    def for_cp1(cls, issuer: str, spki_der: bytes, algorithm: str, not_before: datetime | None,
                not_after: datetime | None, kid: bytes | None = None) -> TrustedKey:
        """A CP1 issuer key from its SubjectPublicKeyInfo DER."""
        if algorithm not in ALG_IDS:
            raise TrustError(f"CP1 key for {issuer}: unknown algorithm {algorithm!r}")
        key = serialization.load_der_public_key(spki_der)
        if not key_matches_alg(key, ALG_IDS[algorithm]):  # type: ignore[arg-type]
            raise TrustError(f"CP1 key for {issuer}: key type does not match {algorithm}")
        return cls(kid=kid or kid_for(spki_der), issuer=issuer, source=SOURCE_CP1, public_key=key,  # type: ignore[arg-type]
                   der=spki_der, not_before=not_before, not_after=not_after, algorithm=algorithm)

    @classmethod
    def from_certificate(cls, der: bytes, kid: bytes | None = None) -> TrustedKey:
        """An EU DCC Document Signer Certificate (DER); validity and usages from the certificate."""
        try:
            cert = x509.load_der_x509_certificate(der)
            public_key = cert.public_key()
        except (ValueError, TypeError) as exc:
            raise TrustError(f"not a usable X.509 DER certificate: {exc}") from None
        usages, lenient = _dsc_usages(cert, der)
        countries = cert.subject.get_attributes_for_oid(x509.NameOID.COUNTRY_NAME)
        country = str(countries[0].value) if countries else None
        issuer = country or cert.subject.rfc4514_string()
        return cls(kid=kid or kid_for(der), issuer=issuer, source=SOURCE_DSC, public_key=public_key,  # type: ignore[arg-type]
                   der=der, not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                   usages=usages, read_leniently=lenient, country=country)

    def to_record(self) -> dict:
        record: dict = {"src": self.source, "kid": self.kid, "der": self.der}
        if self.source == SOURCE_CP1:
            record.update(iss=self.issuer, alg=self.algorithm, nbf=_ts(self.not_before), exp=_ts(self.not_after))
        return record

    @classmethod
    def from_record(cls, record: dict) -> TrustedKey:
        if not isinstance(record, dict):
            raise TrustError("trust entry is not a map")
        if record.get("src") == SOURCE_DSC:
            return cls.from_certificate(record["der"], record.get("kid"))
        if record.get("src") == SOURCE_CP1:
            return cls.for_cp1(record["iss"], record["der"], record["alg"], _dt(record.get("nbf")),
                               _dt(record.get("exp")), record.get("kid"))
        raise TrustError(f"unknown trust entry source {record.get('src')!r}")


def _usages_of(oids: Iterable[str]) -> frozenset[str]:
    return frozenset(USAGE_OIDS[oid] for oid in oids if oid in USAGE_OIDS)


def _dsc_usages(cert: x509.Certificate, der: bytes) -> tuple[frozenset[str], bool]:
    """The DCC usages of a DSC and whether they had to be read leniently; TrustError if unreadable.

    ``cryptography`` parses all extensions at once and rejects the lot for one non-DER detail;
    dropping the restriction then would let a test-only signer sign vaccinations (fail-open).
    """
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        return _usages_of(oid.dotted_string for oid in eku), False
    except x509.ExtensionNotFound:
        return frozenset(), False
    except (ValueError, x509.DuplicateExtension) as strict_error:
        try:
            return _usages_of(_lenient_eku_oids(der)), True
        except (PyAsn1Error, TrustError) as exc:
            raise TrustError(f"DSC {kid_for(der).hex()}: extended key usage unreadable ({strict_error}; "
                             f"lenient read: {exc}): refused, its usage restriction cannot be honoured") from None


def _lenient_eku_oids(der: bytes) -> list[str]:
    """The extended-key-usage OIDs of a certificate, decoded as BER (accepts encoded defaults)."""
    cert, rest = ber_decoder.decode(der, asn1Spec=rfc5280.Certificate())
    if rest:
        raise TrustError(f"{len(rest)} bytes after the certificate")
    extensions = cert["tbsCertificate"]["extensions"]
    found = [ext for ext in extensions if ext["extnID"] == rfc5280.id_ce_extKeyUsage] if extensions.isValue else []
    if len(found) > 1:
        raise TrustError("extended key usage appears more than once")
    if not found:
        return []
    eku, rest = ber_decoder.decode(bytes(found[0]["extnValue"]), asn1Spec=rfc5280.ExtKeyUsageSyntax())
    if rest:
        raise TrustError("bytes after the extended key usage")
    return [str(oid) for oid in eku]


def _ts(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())


def _dt(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), UTC)


class TrustStore:
    """An immutable set of trusted keys indexed by kid, plus revoked pass ids."""

    def __init__(self, keys: Iterable[TrustedKey] = (), revoked_pass_ids: Iterable[str] = (),
                 version: int = 0, issued_at: datetime | None = None):
        index: dict[bytes, list[TrustedKey]] = {}
        for key in keys:
            index.setdefault(key.kid, []).append(key)
        self._by_kid = {kid: tuple(keys) for kid, keys in index.items()}
        self.revoked_pass_ids = frozenset(revoked_pass_ids)
        self.version = version
        self.issued_at = issued_at

    def candidates(self, kid: bytes | None) -> tuple[TrustedKey, ...]:
        """Every key with this kid (kids may collide: try each)."""
        return self._by_kid.get(kid, ()) if kid is not None else ()

    def all_keys(self) -> list[TrustedKey]:
        return [key for keys in self._by_kid.values() for key in keys]

    def is_revoked(self, pass_id: str) -> bool:
        return pass_id in self.revoked_pass_ids

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_kid.values())

    def to_payload(self) -> bytes:
        """CBOR payload of a trust envelope."""
        return cbor2.dumps({"keys": [k.to_record() for k in self.all_keys()],
                            "revoked": sorted(self.revoked_pass_ids)})

    @classmethod
    def from_payload(cls, payload: bytes, version: int = 0, issued_at: datetime | None = None) -> TrustStore:
        """Parse a trust payload; entries that cannot be used are skipped with a log line."""
        try:
            data = cbor2.loads(payload)
            records, revoked = data["keys"], data.get("revoked", [])
        except Exception as exc:
            raise TrustError(f"trust payload is malformed: {exc}") from None
        keys: list[TrustedKey] = []
        refused: list[str] = []
        for record in records:
            try:
                keys.append(TrustedKey.from_record(record))
            except (TrustError, KeyError, TypeError, ValueError) as exc:
                refused.append(str(exc))
        # one line per load, however many certificates are affected (not one per certificate)
        if refused:
            log.warning("event=trust_entry_skipped count=%d version=%d errors=%r action=these keys verify nothing; "
                        "ask the publisher to fix or drop them", len(refused), version, refused[:5])
        lenient = [key.kid.hex() for key in keys if key.read_leniently]
        if lenient:
            log.info("event=dsc_usage_read_leniently count=%d version=%d kids=%s action=none: strict DER parsing "
                     "rejected an extension; usage restrictions read and applied", len(lenient), version, lenient[:5])
        return cls(keys, [str(p) for p in revoked], version, issued_at)

    @classmethod
    def from_envelope(cls, blob: bytes, publisher_keys: list[Ed25519PublicKey]) -> TrustStore:
        """Open a signed ``trust`` envelope with the pinned publisher keys."""
        env = open_envelope(blob, ENVELOPE_KIND, publisher_keys)
        return cls.from_payload(env.payload, env.version, env.issued_at)

    def sign_envelope(self, key: Ed25519PrivateKey, version: int | None = None,
                      issued_at: datetime | None = None) -> bytes:
        """This store as a signed envelope (the server side's builder ends here)."""
        return sign_envelope(ENVELOPE_KIND, self.version if version is None else version, self.to_payload(), key,
                             issued_at)


def build_trust_envelope(keys: Iterable[TrustedKey], publisher_key: Ed25519PrivateKey, version: int,
                         revoked_pass_ids: Iterable[str] = (), issued_at: datetime | None = None) -> bytes:
    """Server side: make the signed trust bundle the devices install."""
    return TrustStore(keys, revoked_pass_ids, version).sign_envelope(publisher_key, version, issued_at)


def load_trust_file(path: Path, publisher_keys: list[Ed25519PublicKey]) -> TrustStore:
    """Read and open a trust bundle file; TrustError says what is wrong and what to do."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise TrustError(f"{path}: cannot read trust bundle ({exc.strerror}); sync or provision first") from None
    try:
        return TrustStore.from_envelope(blob, publisher_keys)
    except EnvelopeError as exc:
        raise TrustError(f"{path}: {exc}") from None
