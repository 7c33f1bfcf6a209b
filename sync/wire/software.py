"""Software releases on the wire: a signed manifest naming every wheel of a release by SHA-256.

The central server publishes one manifest per OS target (``bookworm``, ``trixie``) as a ``software``
envelope signed by the pinned publisher key; its envelope version is the release sequence number,
so a device never installs an older release than it has seen (anti-rollback, as for the lists).
The wheels themselves are fetched by hash and checked against the manifest before anything runs.
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync.wire.envelope import EnvelopeError, open_envelope, sign_envelope

SOFTWARE_KIND = "software"
TARGETS = ("bookworm", "trixie")
#: a wheel file name (PEP 427) with no path in it
_WHEEL = re.compile(r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.!+]+(-[A-Za-z0-9_.]+){3}\.whl$")
MAX_WHEEL_BYTES = 200 * 1024 * 1024


class ReleaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1, le=MAX_WHEEL_BYTES)

    @field_validator("name")
    @classmethod
    def _plain_wheel_name(cls, v: str) -> str:
        if not _WHEEL.match(v):
            raise ValueError(f"not a plain wheel file name: {v!r}")
        return v


class Release(BaseModel):
    """What one release installs: ``requirement`` from exactly these ``files`` (offline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z.+!-]+$")
    target: str
    requirement: str = Field(min_length=1, max_length=200)
    files: tuple[ReleaseFile, ...] = Field(min_length=1, max_length=500)

    @field_validator("target")
    @classmethod
    def _known_target(cls, v: str) -> str:
        if v not in TARGETS:
            raise ValueError(f"unknown target {v!r}: one of {', '.join(TARGETS)}")
        return v


def seal_release(release: Release, sequence: int, key: Ed25519PrivateKey) -> bytes:
    """The signed manifest of release number ``sequence``."""
    return sign_envelope(SOFTWARE_KIND, sequence, release.model_dump_json().encode(), key)


def open_release(blob: bytes, keys: list[Ed25519PublicKey]) -> tuple[int, Release]:
    """(sequence, release) of a signed manifest; EnvelopeError if forged, corrupt or malformed."""
    envelope = open_envelope(blob, SOFTWARE_KIND, keys)
    try:
        return envelope.version, Release.model_validate_json(envelope.payload)
    except ValidationError as exc:
        raise EnvelopeError(f"software manifest {envelope.version} is malformed: {exc.errors()[0]['msg']}") from None
