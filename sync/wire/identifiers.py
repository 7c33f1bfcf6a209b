"""Holder identifiers: what stands for a citizen ID in passes, risk lists, scan logs and the server."""

from __future__ import annotations

import hashlib

HOLDER_HASH_BYTES = 16


def holder_hash(citizen_id: str, salt: str = "CP1-holder-v1") -> bytes:
    """Return the 16-byte truncated SHA-256 that stands for a citizen ID everywhere.

    The plain ID never leaves the issuer: passes, risk lists and scan logs carry only this hash.
    """
    normalized = "".join(citizen_id.split()).upper()
    return hashlib.sha256(f"{salt}:{normalized}".encode()).digest()[:HOLDER_HASH_BYTES]
