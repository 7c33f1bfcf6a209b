"""Holder identifiers: a keyed hash of the citizen id, so a list or a log cannot be read back.

A Vietnamese citizen id has 12 digits (province, century and sex, birth year, 6-digit serial):
an unkeyed hash of it is reversed by trying every id of a birth year in seconds. The value that
stands for a citizen everywhere (CP1 passes, risk lists, scan logs, the server's database) is
therefore HMAC-SHA-256 under the *identifier key*, cut to 16 bytes. The key is held by the
issuing authority (it writes the value into each pass) and by the central server (it publishes
the risk list from citizen ids); a device never holds it: it only compares the value a pass
carries with the values on the list, and enumeration on a stolen card or database dump has
nothing to compare against without the key.

EU DCCs carry no citizen id. Their holders are listed by the certificate identifier (UCI) of each
DCC the health authority issued them: ``certificate_hash`` is the EU revocation hash of a UCI
(SHA-256, first 16 bytes), which a device computes from the pass itself. A UCI carries the
issuer's random part, so it is not a small space like a citizen id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic

HOLDER_HASH_BYTES = 16
ID_KEY_BYTES = 32
_DOMAIN = b"checkpoint-holder-id-v2\x00"
_KEY_ID_DOMAIN = b"checkpoint-identifier-key-id\x00"
_FILE_LABEL = "checkpoint identifier key v1"
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


class IdentifierKeyError(CheckpointError, ValueError):
    """An identifier key file is missing, malformed or readable by others."""


@dataclass(frozen=True)
class IdentifierKey:
    """The secret behind holder identifiers (32 random bytes); ``key_id`` names it in logs."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != ID_KEY_BYTES:
            raise IdentifierKeyError(f"an identifier key is {ID_KEY_BYTES} bytes, got {len(self.secret)}")

    @property
    def key_id(self) -> str:
        """A short public name of the key (safe to log; says nothing about the secret)."""
        return hashlib.sha256(_KEY_ID_DOMAIN + self.secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> IdentifierKey:
        return cls(secrets.token_bytes(ID_KEY_BYTES))

    def save(self, path: Path) -> None:
        """Write the key (mode 0600): a label line and the secret as hex."""
        write_atomic(Path(path), f"{_FILE_LABEL}\n{self.secret.hex()}\n".encode(), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> IdentifierKey:
        """Read a key file written by ``save``; refuse one that others may read."""
        path = Path(path)
        try:
            text = path.read_text(encoding="ascii")
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise IdentifierKeyError(f"{path}: identifier key file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise IdentifierKeyError(f"{path}: cannot read identifier key: {exc}") from None
        if mode & 0o077:
            raise IdentifierKeyError(f"{path}: identifier key is readable by others (mode {mode & 0o777:o}); "
                                     "chmod 600 it")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) != 2 or lines[0] != _FILE_LABEL or not _HEX_KEY.fullmatch(lines[1]):
            raise IdentifierKeyError(f"{path}: not an identifier key file ('{_FILE_LABEL}' and 64 hex digits)")
        return cls(bytes.fromhex(lines[1]))

    @classmethod
    def load_or_create(cls, path: Path) -> IdentifierKey:
        """The server's key, created on first use."""
        if Path(path).exists():
            return cls.load(path)
        key = cls.generate()
        key.save(path)
        return key


def normalise_citizen_id(citizen_id: str) -> str:
    """The citizen id without spaces, upper case (as printed on cards in many ways)."""
    return "".join(citizen_id.split()).upper()


def holder_hash(citizen_id: str, key: IdentifierKey) -> bytes:
    """The 16-byte keyed identifier that stands for a citizen id in passes, lists and logs."""
    if not isinstance(key, IdentifierKey):
        raise TypeError("holder_hash needs the IdentifierKey (issuer and central server only)")
    normalised = normalise_citizen_id(citizen_id)
    if not normalised:
        raise ValueError("citizen id is empty")
    return hmac.digest(key.secret, _DOMAIN + normalised.encode(), "sha256")[:HOLDER_HASH_BYTES]


def holder_hasher(key: IdentifierKey) -> Callable[[bytes], bytes]:
    """``holder_hash`` for millions of ids: normalised id bytes (ASCII, see ``normalise_citizen_id``)
    to the same 16 bytes.

    HMAC-SHA256 (RFC 2104) with its two keyed SHA-256 states built once and copied per id: a
    national risk list keys 10 million ids, and ``hmac.digest`` re-derives the key pads on every
    call, which costs about twice the hashing itself.
    """
    if not isinstance(key, IdentifierKey):
        raise TypeError("holder_hasher needs the IdentifierKey (issuer and central server only)")
    block = key.secret.ljust(64, b"\0")  # 32 bytes: within SHA-256's 64-byte block, used as is
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + _DOMAIN)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def keyed(normalised: bytes) -> bytes:
        mac = inner.copy()
        mac.update(normalised)
        final = outer.copy()
        final.update(mac.digest())
        return final.digest()[:HOLDER_HASH_BYTES]

    return keyed


_CERT_DOMAIN = b"checkpoint-dcc-certificate-v1\x00"


def keyed_certificate(certificate: bytes, key: IdentifierKey) -> bytes:
    """What the central server stores for an EU DCC holder: the certificate hash a device logged,
    keyed like citizen ids, so a database dump cannot be matched against guessed UCIs either."""
    return hmac.new(key.secret, _CERT_DOMAIN + certificate, hashlib.sha256).digest()[:HOLDER_HASH_BYTES]


def certificate_hash(uci: str) -> bytes:
    """The EU DCC revocation hash of a certificate identifier (UCI): SHA-256, first 16 bytes.

    A device computes it from the pass; the publisher from the UCIs a health authority issued.
    """
    if not uci:
        raise ValueError("certificate identifier (UCI) is empty")
    return hashlib.sha256(uci.encode()).digest()[:HOLDER_HASH_BYTES]
