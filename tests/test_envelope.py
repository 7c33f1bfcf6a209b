import contextlib
from datetime import UTC, datetime

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.wire.envelope import EnvelopeError, open_envelope, sign_envelope

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()


def test_round_trip():
    at = datetime(2026, 5, 1, tzinfo=UTC)
    blob = sign_envelope("policy", 7, b"payload", KEY, issued_at=at)
    env = open_envelope(blob, "policy", [OTHER.public_key(), KEY.public_key()])
    assert (env.kind, env.version, env.issued_at, env.payload) == ("policy", 7, at, b"payload")


def test_forged_signature_rejected():
    blob = sign_envelope("policy", 1, b"x", OTHER)
    with pytest.raises(EnvelopeError, match="pinned publisher key"):
        open_envelope(blob, "policy", [KEY.public_key()])


def test_payload_swap_rejected():
    header, _payload, signature = cbor2.loads(sign_envelope("trust", 1, b"good", KEY))
    with pytest.raises(EnvelopeError, match="signature"):
        open_envelope(cbor2.dumps([header, b"evil", signature]), "trust", [KEY.public_key()])


def test_wrong_kind_rejected():
    with pytest.raises(EnvelopeError, match="expected a 'trust' envelope"):
        open_envelope(sign_envelope("policy", 1, b"x", KEY), "trust", [KEY.public_key()])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=400))
def test_garbage_and_truncation_only_raise_envelope_error(garbage: bytes, cut: int):
    for blob in (garbage, sign_envelope("time", 3, b"now", KEY)[:cut]):
        with contextlib.suppress(EnvelopeError):
            open_envelope(blob, "time", [KEY.public_key()])
