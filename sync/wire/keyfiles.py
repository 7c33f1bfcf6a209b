"""Key files: Ed25519 signing keys and X25519 encryption keys as PEM, written with 0600 modes."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic


class KeyFileError(CheckpointError, ValueError):
    """A key file is missing or is not the kind of key expected."""


def private_pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def save_private_key(path: Path, key: Ed25519PrivateKey | X25519PrivateKey) -> None:
    write_atomic(path, private_pem(key), mode=0o600)


def save_public_key(path: Path, key: Ed25519PublicKey | X25519PublicKey, *, mode: int = 0o644) -> None:
    write_atomic(path, public_pem(key), mode=mode)


def load_or_create_ed25519(path: Path) -> Ed25519PrivateKey:
    """Load the device key, creating it on first use (the private key never leaves the device)."""
    if path.exists():
        return load_ed25519_private(path)
    key = Ed25519PrivateKey.generate()
    save_private_key(path, key)
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found (provision the device first)") from None


def _load(path: Path, expected: type, *, private: bool):
    """A PEM key of the expected type, or KeyFileError naming the file and what it should hold."""
    raw = _read(path)
    try:
        key = (serialization.load_pem_private_key(raw, password=None) if private
               else serialization.load_pem_public_key(raw))
    except ValueError:
        key = None
    if not isinstance(key, expected):
        kind = expected.__name__.removesuffix("PrivateKey").removesuffix("PublicKey")
        raise KeyFileError(f"{path}: expected an {kind} {'private' if private else 'public'} key (PEM)")
    return key


def load_ed25519_private(path: Path) -> Ed25519PrivateKey:
    return _load(path, Ed25519PrivateKey, private=True)


def load_ed25519_public(path: Path) -> Ed25519PublicKey:
    return _load(path, Ed25519PublicKey, private=False)


def load_x25519_private(path: Path) -> X25519PrivateKey:
    return _load(path, X25519PrivateKey, private=True)


def load_x25519_public(path: Path) -> X25519PublicKey:
    return _load(path, X25519PublicKey, private=False)
