"""Holder hashes encrypted to the central server, so a stolen SD card does not say who passed.

Each sealed value is ``epk(32) || nonce(12) || AES-GCM(holder_hash) (16 + 16 tag)`` = 76 bytes.
``epk`` is an ephemeral X25519 public key; the AES-256 key is HKDF-SHA256 over the X25519 shared
secret with the server's public key. The ephemeral *private* key is discarded at once, so the
device can write these values but never read them back. The derived AES key lives only in RAM
and is rotated every ``rotate_after`` records (one X25519 per record would cost the server ~100 µs
per record on ingest; with rotation it pays one X25519 per epoch and caches the key). The AAD
binds a ciphertext to its device and sequence number so it cannot be moved to another record.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sync.wire.errors import CheckpointError

HKDF_INFO = b"checkpoint-scanlog-holder-v1"
EPK_BYTES = 32
NONCE_BYTES = 12
SEALED_BYTES = EPK_BYTES + NONCE_BYTES + 16 + 16


class PrivacyError(CheckpointError, ValueError):
    """A sealed holder hash is malformed, or was not sealed to this server's key."""


def _raw(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _derive(shared: bytes, epk: bytes, server_pub: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + server_pub, info=HKDF_INFO).derive(shared)
    return AESGCM(key)


def holder_aad(device_id: str, seq: int) -> bytes:
    """Associated data binding a sealed holder hash to one scan record."""
    return f"{device_id}\x00{seq}".encode()


class HolderSealer:
    """Device side: encrypts holder hashes to the server's X25519 public key."""

    def __init__(self, server_public_key: X25519PublicKey, *, rotate_after: int = 10_000):
        self._server_pub = _raw(server_public_key)
        self._server_key = server_public_key
        self._rotate_after = max(1, rotate_after)
        self._lock = threading.Lock()
        self._epoch: tuple[bytes, AESGCM] | None = None
        self._used = 0

    def _current(self) -> tuple[bytes, AESGCM]:
        if self._epoch is None or self._used >= self._rotate_after:
            ephemeral = X25519PrivateKey.generate()
            epk = _raw(ephemeral.public_key())
            self._epoch = (epk, _derive(ephemeral.exchange(self._server_key), epk, self._server_pub))
            self._used = 0
        self._used += 1
        return self._epoch

    def seal(self, holder_hash: bytes, aad: bytes) -> bytes:
        """Encrypt a 16-byte holder hash; the result is SEALED_BYTES long."""
        if len(holder_hash) != 16:
            raise ValueError(f"holder hash must be 16 bytes, got {len(holder_hash)}")
        with self._lock:
            epk, aead = self._current()
        nonce = os.urandom(NONCE_BYTES)
        return epk + nonce + aead.encrypt(nonce, holder_hash, aad)


class HolderOpener:
    """Server side: decrypts sealed holder hashes, caching one AES key per ephemeral key."""

    def __init__(self, server_private_key: X25519PrivateKey, *, cache_size: int = 4096):
        self._key = server_private_key
        self._server_pub = _raw(server_private_key.public_key())
        self._cache: dict[bytes, AESGCM] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _aead(self, epk: bytes) -> AESGCM:
        with self._lock:
            aead = self._cache.get(epk)
        if aead is not None:
            return aead
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(epk))
        except ValueError as exc:
            raise PrivacyError(f"bad ephemeral key: {exc}") from None
        aead = _derive(shared, epk, self._server_pub)
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[epk] = aead
        return aead

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """Decrypt a sealed holder hash; raise PrivacyError if it is corrupt or not ours."""
        if len(sealed) != SEALED_BYTES:
            raise PrivacyError(f"sealed holder hash must be {SEALED_BYTES} bytes, got {len(sealed)}")
        epk, nonce = sealed[:EPK_BYTES], sealed[EPK_BYTES:EPK_BYTES + NONCE_BYTES]
        body = sealed[EPK_BYTES + NONCE_BYTES:]
        try:
            return self._aead(epk).decrypt(nonce, body, aad)
        except InvalidTag:
            raise PrivacyError("holder hash does not decrypt: wrong server key, wrong record, or tampered") from None

    def batch_opener(self) -> Callable[[bytes, bytes], bytes]:
        """``open`` for one batch: remembers the last ephemeral key's AES key (records of a batch
        share their epoch), so the cache and its lock are touched once per epoch, not per record."""
        last: list = [None, None]

        def open_one(sealed: bytes, aad: bytes) -> bytes:
            if len(sealed) != SEALED_BYTES:
                raise PrivacyError(f"sealed holder hash must be {SEALED_BYTES} bytes, got {len(sealed)}")
            epk = sealed[:EPK_BYTES]
            if epk != last[0]:
                last[1] = self._aead(epk)
                last[0] = epk
            try:
                return last[1].decrypt(sealed[EPK_BYTES:EPK_BYTES + NONCE_BYTES], sealed[EPK_BYTES + NONCE_BYTES:], aad)
            except InvalidTag:
                raise PrivacyError("holder hash does not decrypt: wrong server key, wrong record, or "
                                   "tampered") from None
        return open_one
