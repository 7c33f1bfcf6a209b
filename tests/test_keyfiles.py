"""Key files: each loader takes only its own kind of key and names the file when it does not."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sync.wire.errors import CheckpointError
from sync.wire.keyfiles import (
    KeyFileError,
    load_ed25519_private,
    load_ed25519_public,
    load_or_create_ed25519,
    load_x25519_public,
    save_public_key,
)


def test_each_loader_takes_its_own_kind_only(tmp_path):
    device = load_or_create_ed25519(tmp_path / "device.pem")
    assert load_ed25519_private(tmp_path / "device.pem").private_bytes_raw() == device.private_bytes_raw()
    save_public_key(tmp_path / "x.pub.pem", X25519PrivateKey.generate().public_key())
    save_public_key(tmp_path / "ed.pub.pem", Ed25519PrivateKey.generate().public_key())
    assert load_ed25519_public(tmp_path / "ed.pub.pem") is not None
    with pytest.raises(KeyFileError, match=r"x\.pub\.pem: expected an Ed25519 public key"):
        load_ed25519_public(tmp_path / "x.pub.pem")
    with pytest.raises(KeyFileError, match="expected an X25519 public key"):
        load_x25519_public(tmp_path / "ed.pub.pem")
    with pytest.raises(KeyFileError, match="expected an Ed25519 private key"):
        load_ed25519_private(tmp_path / "ed.pub.pem")  # a public key where a private one belongs
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(CheckpointError, match=r"junk\.pem"):
        load_ed25519_public(tmp_path / "junk.pem")
    with pytest.raises(KeyFileError, match="key file not found"):
        load_ed25519_public(tmp_path / "missing.pem")
