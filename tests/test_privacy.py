import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.wire.sealed import SEALED_BYTES, HolderOpener, HolderSealer, PrivacyError, holder_aad

SERVER = X25519PrivateKey.generate()


def test_round_trip_and_size():
    sealer = HolderSealer(SERVER.public_key())
    sealed = sealer.seal(b"h" * 16, holder_aad("dev-1", 7))
    assert len(sealed) == SEALED_BYTES
    assert b"h" * 16 not in sealed
    assert HolderOpener(SERVER).open(sealed, holder_aad("dev-1", 7)) == b"h" * 16


def test_wrong_record_or_key_or_tamper_rejected():
    sealed = HolderSealer(SERVER.public_key()).seal(bytes(16), holder_aad("dev-1", 1))
    with pytest.raises(PrivacyError):
        HolderOpener(SERVER).open(sealed, holder_aad("dev-1", 2))
    with pytest.raises(PrivacyError):
        HolderOpener(SERVER).open(sealed, holder_aad("dev-2", 1))
    with pytest.raises(PrivacyError):
        HolderOpener(X25519PrivateKey.generate()).open(sealed, holder_aad("dev-1", 1))
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    with pytest.raises(PrivacyError):
        HolderOpener(SERVER).open(bytes(flipped), holder_aad("dev-1", 1))
    with pytest.raises(PrivacyError):
        HolderOpener(SERVER).open(sealed[:-1], holder_aad("dev-1", 1))


def test_epochs_rotate_and_nonces_differ():
    sealer = HolderSealer(SERVER.public_key(), rotate_after=2)
    seals = [sealer.seal(bytes(16), b"a") for _ in range(5)]
    epks = [s[:32] for s in seals]
    assert epks[0] == epks[1] != epks[2] == epks[3] != epks[4]
    assert len({s[32:44] for s in seals}) == 5
    opener = HolderOpener(SERVER, cache_size=1)
    assert all(opener.open(s, b"a") == bytes(16) for s in seals)


def test_rejects_wrong_length_input():
    with pytest.raises(ValueError):
        HolderSealer(SERVER.public_key()).seal(b"short", b"")


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.text(min_size=1, max_size=20), st.integers(1, 2**40))
def test_property_round_trip(hh, device, seq):
    sealed = HolderSealer(SERVER.public_key()).seal(hh, holder_aad(device, seq))
    assert HolderOpener(SERVER).open(sealed, holder_aad(device, seq)) == hh


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=120))
def test_property_garbage_is_a_clear_error(blob):
    with pytest.raises(PrivacyError):
        HolderOpener(SERVER).open(blob, b"x")
