"""COSE_Sign1 (RFC 9052) for both pass formats: parse, verify, sign. ES256, PS256 and EdDSA.

The parser never trusts a header it cannot read: ``alg`` and ``kid`` come from the protected
header when present there (protected wins) and from the unprotected header otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from edge.passes.codec import bounded, cbor_decode, cbor_loads
from edge.verdict import PassRejected, Reason

COSE_SIGN1_TAG = 18
HDR_ALG = 1
HDR_KID = 4

ES256 = -7
EDDSA = -8
PS256 = -37
ALG_NAMES = {ES256: "ES256", EDDSA: "EdDSA", PS256: "PS256"}
ALG_IDS = {name: alg for alg, name in ALG_NAMES.items()}

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
_PSS_AUTO = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
_SHA256 = hashes.SHA256()
_ECDSA = ec.ECDSA(_SHA256)
_MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Sign1:
    """A parsed, not yet verified COSE_Sign1 message."""

    protected_bytes: bytes
    alg: int | None
    kid: bytes | None
    payload: bytes
    signature: bytes

    def to_be_signed(self) -> bytes:
        """The Sig_structure the signature covers (external_aad is empty): the CBOR array
        ``["Signature1", protected, b"", payload]``, encoded here byte for byte as ``cbor2.dumps``
        encodes it (a fixed head, then two byte strings with their shortest length heads)."""
        protected, payload = self.protected_bytes, self.payload
        return b"".join((_SIG1_HEAD, _bstr_head(len(protected)), protected, b"\x40",
                         _bstr_head(len(payload)), payload))


#: CBOR array of 4, then the text string "Signature1"
_SIG1_HEAD = b"\x84\x6aSignature1"


def _bstr_head(n: int) -> bytes:
    """The shortest CBOR head of a byte string of ``n`` bytes (major type 2)."""
    if n < 24:
        return bytes((0x40 + n,))
    if n < 0x100:
        return bytes((0x58, n))
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\x5a" + n.to_bytes(4, "big")
    return b"\x5b" + n.to_bytes(8, "big")


def raw_to_der(signature: bytes) -> bytes:
    """A 64-byte COSE ECDSA signature (r || s, 32 bytes each) as the DER ``SEQUENCE { INTEGER r,
    INTEGER s }`` that cryptography verifies: the same bytes as ``encode_dss_signature`` on the two
    integers (shortest big-endian form, a 0x00 before a high bit), built without big integers."""
    r = signature[:32].lstrip(b"\0") or b"\0"
    if r[0] > 0x7F:
        r = b"\0" + r
    s = signature[32:].lstrip(b"\0") or b"\0"
    if s[0] > 0x7F:
        s = b"\0" + s
    return b"".join((bytes((0x30, len(r) + len(s) + 4, 0x02, len(r))), r, bytes((0x02, len(s))), s))


#: the map types cbor2 decodes to (an empty unprotected header comes back as a frozendict)
_MAP_TYPES = (dict, cbor2.frozendict)


def _header_map(value: Any, fmt: str, which: str) -> Mapping:
    if type(value) not in _MAP_TYPES and not isinstance(value, Mapping):
        raise PassRejected(Reason.MALFORMED, f"COSE {which} header is not a map", format=fmt)
    return value


@lru_cache(maxsize=64)
def _protected_header(protected_bytes: bytes, fmt: str) -> Mapping:
    """The protected header map, read once per distinct header: an issuer's key signs every pass
    with the same bytes. Bounded cache; a refusal raises and is not kept. Read-only: never mutated."""
    return _header_map(cbor_loads(protected_bytes, fmt, "protected header"), fmt, "protected")


def parse_sign1(data: bytes, fmt: str) -> Sign1:
    """Parse a (tagged or untagged) COSE_Sign1 from CBOR bytes; MALFORMED on any structural defect."""
    obj = cbor_decode(data, fmt, "COSE", exact=True)
    if type(obj) is cbor2.CBORTag:
        if obj.tag != COSE_SIGN1_TAG:
            raise PassRejected(Reason.MALFORMED, "COSE uses a CBOR tag other than COSE_Sign1's", format=fmt)
        obj = obj.value
    if type(obj) not in (list, tuple) or len(obj) != 4:
        raise PassRejected(Reason.MALFORMED, "COSE_Sign1 must be a 4-element array", format=fmt)
    protected_bytes, unprotected, payload, signature = obj
    if not (type(protected_bytes) is bytes and type(payload) is bytes and type(signature) is bytes):
        raise PassRejected(Reason.MALFORMED, "COSE_Sign1 fields have the wrong types", format=fmt)
    if unprotected:  # the one part left to check: plain, bounded values only (``bounded``)
        bounded(unprotected, fmt, "COSE unprotected header")
    protected = _protected_header(protected_bytes, fmt) if protected_bytes else {}
    unprotected = _header_map(unprotected, fmt, "unprotected")
    alg = protected.get(HDR_ALG, unprotected.get(HDR_ALG))
    kid = protected.get(HDR_KID, unprotected.get(HDR_KID))
    if alg is not None and type(alg) is not int:  # never a bool, float or text (bounded ints only)
        raise PassRejected(Reason.UNSUPPORTED_ALGORITHM, "alg is not an integer", format=fmt)
    if kid is not None and not isinstance(kid, bytes):
        raise PassRejected(Reason.MALFORMED, "kid is not a byte string", format=fmt)
    return Sign1(protected_bytes, alg, kid, payload, signature)


def check_alg(alg: int | None, fmt: str, allowed: frozenset[int]) -> int:
    """Return ``alg`` if this format supports it, else UNSUPPORTED_ALGORITHM."""
    if alg not in allowed:
        # ``alg`` is None or an integer below 2**64 (``bounded``): short to print
        raise PassRejected(Reason.UNSUPPORTED_ALGORITHM, f"algorithm {alg} is not accepted", format=fmt)
    return alg


def key_matches_alg(key: PublicKey, alg: int) -> bool:
    """Whether ``key`` is the right type (and curve / size) for ``alg``."""
    if alg == ES256:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    if alg == PS256:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS
    if alg == EDDSA:
        return isinstance(key, ed25519.Ed25519PublicKey)
    return False


def verify_signature(key: PublicKey, alg: int, signature: bytes, to_be_signed: bytes) -> bool:
    """True when ``signature`` over ``to_be_signed`` is valid for ``key`` under ``alg``."""
    return key_matches_alg(key, alg) and verify_matched(key, alg, signature, to_be_signed)


def verify_matched(key: PublicKey, alg: int, signature: bytes, to_be_signed: bytes) -> bool:
    """``verify_signature`` for a key already known to match ``alg`` (``key_matches_alg``), e.g. a
    trusted key whose algorithms were worked out once when it was loaded."""
    try:
        if alg == ES256:
            if len(signature) != 64:
                return False
            key.verify(raw_to_der(signature), to_be_signed, _ECDSA)  # type: ignore[union-attr]
        elif alg == PS256:
            try:
                key.verify(signature, to_be_signed, _PSS, _SHA256)  # type: ignore[union-attr]
            except InvalidSignature:
                # some issuers sign with the maximum salt length; the salt is still checked
                key.verify(signature, to_be_signed, _PSS_AUTO, _SHA256)  # type: ignore[union-attr]
        else:
            key.verify(signature, to_be_signed)  # type: ignore[union-attr]
    except (InvalidSignature, ValueError):
        return False
    return True


#: the hash each curve is normally used with (ES256 / ES384 / ES512)
_CURVE_HASHES = {"secp256r1": hashes.SHA256(), "secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}


def verifies_outside_algorithm(key: PublicKey, alg: int, signature: bytes, to_be_signed: bytes) -> str | None:
    """The kind of ``key`` (e.g. "EC secp384r1") when the signature verifies with it although
    ``alg`` does not allow that key: the header and the key disagree, the pass is not forged.
    None when it does not verify that way either. Only asked after every allowed check failed."""
    if alg == ES256 and isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        if len(signature) != 2 * size:
            return None
        r, s = (int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
        der = encode_dss_signature(r, s)
        for digest in (_SHA256, _CURVE_HASHES.get(key.curve.name, _SHA256)):
            try:
                key.verify(der, to_be_signed, ec.ECDSA(digest))
            except InvalidSignature:
                continue
            return f"EC {key.curve.name}"
        return None
    if alg == PS256 and isinstance(key, rsa.RSAPublicKey):
        try:
            key.verify(signature, to_be_signed, _PSS_AUTO, _SHA256)
        except (InvalidSignature, ValueError):
            return None
        return f"RSA-{key.key_size}"
    return None


def sign1(payload: bytes, key: PrivateKey, alg: int, kid: bytes) -> bytes:
    """Make a tagged COSE_Sign1 with ``alg`` and ``kid`` in the protected header."""
    protected = cbor2.dumps({HDR_ALG: alg, HDR_KID: kid})
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    if alg == ES256:
        r, s = decode_dss_signature(key.sign(tbs, _ECDSA))  # type: ignore[call-arg, union-attr]
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == PS256:
        signature = key.sign(tbs, _PSS, _SHA256)  # type: ignore[call-arg, union-attr]
    elif alg == EDDSA:
        signature = key.sign(tbs)  # type: ignore[call-arg, union-attr]
    else:
        raise ValueError(f"cannot sign with algorithm {alg}")
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
