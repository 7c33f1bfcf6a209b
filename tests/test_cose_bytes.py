"""Hand-built COSE bytes (Sig_structure, ECDSA DER) equal what the libraries build."""

from __future__ import annotations

import cbor2
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.passes.cose import Sign1, raw_to_der

_SIZES = st.sampled_from([0, 1, 23, 24, 255, 256, 300, 65535, 65536])


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=600), _SIZES)
def test_to_be_signed_is_the_cbor2_sig_structure(protected: bytes, payload: bytes, extra: int) -> None:
    payload += bytes(extra)
    msg = Sign1(protected, -7, None, payload, b"")
    assert msg.to_be_signed() == cbor2.dumps(["Signature1", protected, b"", payload])


_HALF = st.one_of(st.binary(min_size=32, max_size=32),
                  st.integers(0, 40).map(lambda zeros: bytes(zeros) + b"\x80" * (32 - zeros))
                  .map(lambda b: b[:32].rjust(32, b"\0")))


@settings(max_examples=300, deadline=None)
@given(_HALF, _HALF)
def test_raw_to_der_matches_encode_dss_signature(r: bytes, s: bytes) -> None:
    expected = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
    assert raw_to_der(r + s) == expected


def test_raw_to_der_edges() -> None:
    for sig in (bytes(64), b"\xff" * 64, bytes(31) + b"\x01" + bytes(31) + b"\x7f", b"\x00\x80" + bytes(62)):
        assert raw_to_der(sig) == encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
