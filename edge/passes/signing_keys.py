"""Find the trusted key that signed a COSE_Sign1: every key with the kid is tried in turn."""

from __future__ import annotations

from datetime import datetime

from edge.passes.cose import Sign1, verifies_outside_algorithm, verify_matched
from edge.passes.trust import TrustedKey, TrustStore
from edge.verdict import PassRejected, Reason


def find_signer(msg: Sign1, trust: TrustStore, source: str, fmt: str) -> TrustedKey:
    """The first trusted key of ``source`` whose signature check passes.

    UNKNOWN_ISSUER when no key has the kid; UNSUPPORTED_ALGORITHM when the signature verifies
    only with a key the algorithm does not allow (an ES256 header over a P-384 key: not forged,
    but not ES256 either); BAD_SIGNATURE when none of them verifies.
    """
    candidates = [k for k in trust.candidates(msg.kid) if k.source == source]
    if not candidates:
        kid = msg.kid.hex() if msg.kid else "none"
        raise PassRejected(Reason.UNKNOWN_ISSUER, f"no trusted key with kid {kid}", format=fmt)
    tbs = msg.to_be_signed()
    assert msg.alg is not None
    for key in candidates:
        if msg.alg in key.algorithms and verify_matched(key.public_key, msg.alg, msg.signature, tbs):
            return key
    for key in candidates:
        if msg.alg not in key.algorithms:
            other = verifies_outside_algorithm(key.public_key, msg.alg, msg.signature, tbs)
            if other is not None:
                raise PassRejected(Reason.UNSUPPORTED_ALGORITHM,
                                   f"signature verifies with a {other} key, which algorithm {msg.alg} does not allow",
                                   format=fmt)
    raise PassRejected(Reason.BAD_SIGNATURE, f"none of {len(candidates)} key(s) with this kid verifies",
                       format=fmt)


def check_key_period(key: TrustedKey, signed_at: datetime | None, now: datetime | None, fmt: str) -> None:
    """ISSUER_KEY_EXPIRED unless the key was valid when the pass was signed and is valid now."""
    for label, when in (("at signing", signed_at), ("now", now)):
        if when is not None and not key.valid_at(when):
            raise PassRejected(Reason.ISSUER_KEY_EXPIRED, f"key {key.kid.hex()} not valid {label}", format=fmt)
