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


def save_public_key(path: Path, key: Ed25519PublicKey | X25519PublicKey) -> None:
    write_atomic(path, public_pem(key))


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


def load_ed25519_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(_read(path), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: expected an Ed25519 private key")
    return key


def load_ed25519_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(_read(path))
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: expected an Ed25519 public key")
    return key


def load_x25519_private(path: Path) -> X25519PrivateKey:
    key = serialization.load_pem_private_key(_read(path), password=None)
    if not isinstance(key, X25519PrivateKey):
        raise KeyFileError(f"{path}: expected an X25519 private key")
    return key


def load_x25519_public(path: Path) -> X25519PublicKey:
    key = serialization.load_pem_public_key(_read(path))
    if not isinstance(key, X25519PublicKey):
        raise KeyFileError(f"{path}: expected an X25519 public key")
    return key
