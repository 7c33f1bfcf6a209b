"""Hostile input: every parser answers with a reason, never an exception (bounded hypothesis runs)."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import base45
import cbor2
import pytest
from conftest import ID_KEY
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.devtools.memory_risk import MemoryRiskList
from edge.lists.policy import default_policy
from edge.passes.cose import ES256, sign1
from edge.passes.cp1 import issue_cp1
from edge.passes.credential import PassKind, Vaccination
from edge.passes.issuer import IssuerKey
from edge.passes.trust import TrustStore
from edge.scan.clock import FixedClock
from edge.scan.verifier import Verifier
from edge.verdict import Reason
from sync.wire.identifiers import holder_hash

NOW = datetime(2026, 3, 1, tzinfo=UTC)
KEY = IssuerKey.generate("HN", "EdDSA", not_before=NOW - timedelta(days=1))
VERIFIER = Verifier(trust=TrustStore([KEY.trusted_key()]), risk=MemoryRiskList({}, published_at=NOW),
                    policy=default_policy(), clock=FixedClock(NOW))
VALID = issue_cp1(KEY, PassKind.RESIDENT, holder_hash("1", ID_KEY), issued_at=NOW, expires_at=NOW + timedelta(days=1),
                  zones=["*"], vaccination=Vaccination(2, 2))
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _wrap(prefix: str, raw: bytes, compress: bool = True) -> str:
    return prefix + base45.b45encode(zlib.compress(raw) if compress else raw).decode()


def _reason(text: str) -> Reason:
    verdict = VERIFIER.verify(text)
    assert verdict.reason != Reason.INTERNAL_ERROR, verdict.detail
    return verdict.reason


@pytest.mark.parametrize("prefix", ["CP1:", "HC1:"])
def test_zlib_bomb_is_capped_before_inflating(prefix: str) -> None:
    bomb = zlib.compress(b"\0" * 50_000_000, 9)  # 50 MB from ~50 KB; cut to what a QR can hold
    assert _reason(prefix + base45.b45encode(bomb[:2900]).decode()) in {Reason.TOO_LARGE, Reason.MALFORMED}
    small_bomb = zlib.compress(b"\0" * 2_000_000, 9)  # ~2 KB compressed: fits a QR, inflates 2 MB
    assert len(small_bomb) < 2900
    assert _reason(prefix + base45.b45encode(small_bomb).decode()) == Reason.TOO_LARGE


@pytest.mark.parametrize("prefix", ["CP1:", "HC1:"])
def test_deep_cbor_and_huge_base45(prefix: str) -> None:
    assert _reason(_wrap(prefix, b"\x81" * 5000 + b"\x00")) == Reason.MALFORMED
    assert _reason(prefix + "A" * 100_000) == Reason.TOO_LARGE
    assert _reason(_wrap(prefix, b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff")) == Reason.MALFORMED  # huge length


def test_unknown_algorithm_and_wrong_curve() -> None:
    payload = cbor2.dumps({1: "HN"})
    odd_alg = sign1(payload, KEY.private_key, -8, KEY.kid)
    odd = cbor2.loads(odd_alg)
    odd_protected = cbor2.dumps({1: -35, 4: KEY.kid})
    forged = cbor2.dumps(cbor2.CBORTag(18, [odd_protected, {}, payload, odd.value[3]]))
    assert _reason(_wrap("CP1:", forged)) == Reason.UNSUPPORTED_ALGORITHM
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError):
        sign1(payload, p384, -999, KEY.kid)
    # ES256 header but the trusted key is Ed25519: never a valid signature
    es = sign1(payload, ec.generate_private_key(ec.SECP256R1()), ES256, KEY.kid)
    assert _reason(_wrap("CP1:", es)) == Reason.BAD_SIGNATURE


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.integers(-300, 300) | st.text(max_size=5), children, max_size=5),
    max_leaves=30)


@FUZZ
@given(st.sampled_from(["CP1:", "HC1:"]), cbor_values, cbor_values, cbor_values, st.binary(max_size=80))
def test_wrong_types_anywhere_in_cose(prefix: str, protected, unprotected, payload, signature: bytes) -> None:
    prot = cbor2.dumps(protected) if not isinstance(protected, bytes) else protected
    for msg in ([prot, unprotected, cbor2.dumps(payload), signature], [prot, {}, payload, signature],
                [cbor2.dumps({1: -8, 4: KEY.kid}), {}, cbor2.dumps(payload), signature]):
        try:
            raw = cbor2.dumps(cbor2.CBORTag(18, msg))
        except (cbor2.CBOREncodeError, TypeError, ValueError):
            continue
        _reason(_wrap(prefix, raw))
        _reason(_wrap(prefix, raw, compress=False))


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    _reason(text)
    _reason("CP1:" + text)
    _reason("HC1:" + text)


@FUZZ
@given(st.data())
def test_mutated_valid_pass(data) -> None:
    raw = bytearray(zlib.decompress(base45.b45decode(VALID[4:])))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    _reason(_wrap("CP1:", bytes(raw[:cut])))  # any reason but INTERNAL_ERROR


@pytest.mark.parametrize("algorithm", ["ES256", "PS256"])
def test_hostile_signed_dccs_all_get_a_reason(algorithm: str) -> None:
    """Signed DCCs with tags, big numbers, odd keys, times past 9999, trailing bytes (the same
    generator ``checkpoint bench verify`` times): none escapes as internal_error."""
    from edge.devtools.hc1_issuer import DocumentSigner
    from edge.devtools.hostile import NOW as HOSTILE_NOW
    from edge.devtools.hostile import hostile_passes, verifier_for

    signer = DocumentSigner.generate("VN", algorithm, not_before=HOSTILE_NOW - timedelta(days=30))
    verifier = verifier_for(signer)
    seed = {"ES256": 1, "PS256": 2}[algorithm]
    reasons = {verifier.verify(text).reason for text in hostile_passes(signer, 400, seed=seed)}
    assert Reason.INTERNAL_ERROR not in reasons
    assert {Reason.MALFORMED, Reason.SCHEMA_INVALID, Reason.OK} <= reasons  # the run reached every stage
