"""CP1 issuer keys: generation, key ids, validity periods (rotation), and their key files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge.passes.cose import ALG_IDS, EDDSA, ES256
from edge.passes.trust import TrustedKey, kid_for
from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic

CP1_ALGORITHMS = ("EdDSA", "ES256")


class IssuerKeyError(CheckpointError, ValueError):
    """An issuer key file is missing, unreadable or of an unsupported kind."""


@dataclass(frozen=True)
class IssuerKey:
    """A CP1 issuer's private signing key with its kid and validity period.

    Rotation: make a new key with a later ``not_before``; the old key keeps verifying passes
    until its ``not_after`` as long as both public keys are in the trust store.
    """

    issuer: str
    kid: bytes
    algorithm: str
    private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    not_before: datetime
    not_after: datetime

    @property
    def alg_id(self) -> int:
        return ALG_IDS[self.algorithm]

    @classmethod
    def generate(cls, issuer: str, algorithm: str = "EdDSA", *, not_before: datetime | None = None,
                 valid_days: float = 730, not_after: datetime | None = None) -> IssuerKey:
        """A fresh key; kid = first 8 bytes of SHA-256 over the public key's SPKI DER."""
        if algorithm not in CP1_ALGORITHMS:
            raise IssuerKeyError(f"CP1 keys use one of {CP1_ALGORITHMS}, not {algorithm!r}")
        if not issuer:
            raise IssuerKeyError("issuer name must not be empty")
        private = (ed25519.Ed25519PrivateKey.generate() if ALG_IDS[algorithm] == EDDSA
                   else ec.generate_private_key(ec.SECP256R1()))
        start = not_before or datetime.now(UTC).replace(microsecond=0)
        end = not_after or start + timedelta(days=valid_days)
        return cls(issuer, kid_for(_spki(private)), algorithm, private, start, end)

    def public_der(self) -> bytes:
        return _spki(self.private_key)

    def trusted_key(self) -> TrustedKey:
        """The public half, as the trust store holds it."""
        return TrustedKey.for_cp1(self.issuer, self.public_der(), self.algorithm, self.not_before,
                                  self.not_after, self.kid)

    def save(self, path: Path) -> None:
        """Write the key as one JSON file (mode 0600) holding metadata and the PKCS#8 PEM."""
        pem = self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        doc = {"issuer": self.issuer, "kid": self.kid.hex(), "algorithm": self.algorithm,
               "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
               "private_key_pem": pem}
        write_atomic(path, json.dumps(doc, indent=2).encode(), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> IssuerKey:
        """Read a key written by ``save``."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            private = serialization.load_pem_private_key(doc["private_key_pem"].encode(), password=None)
            key = cls(doc["issuer"], bytes.fromhex(doc["kid"]), doc["algorithm"], private,  # type: ignore[arg-type]
                      datetime.fromisoformat(doc["not_before"]), datetime.fromisoformat(doc["not_after"]))
        except FileNotFoundError:
            raise IssuerKeyError(f"{path}: issuer key file not found (make one with `checkpoint keys`)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise IssuerKeyError(f"{path}: not an issuer key file: {exc}") from None
        if key.algorithm not in CP1_ALGORITHMS or (
                isinstance(private, ed25519.Ed25519PrivateKey) != (key.alg_id == EDDSA)):
            raise IssuerKeyError(f"{path}: key type does not match algorithm {key.algorithm}")
        return key


def _spki(private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


__all__ = ["CP1_ALGORITHMS", "ES256", "IssuerKey", "IssuerKeyError"]
