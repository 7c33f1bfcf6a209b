"""Publish a software release for the devices: wheels stored by hash, the manifest signed per target.

``published/software/<target>.cpenv`` is the newest release for that OS target; the wheels live in
``published/software/files/<sha256>.whl`` (content-addressed: a file is written once and a release
never changes under a device that is downloading it).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.wire.envelope import open_envelope
from sync.wire.fsutil import write_atomic
from sync.wire.software import SOFTWARE_KIND, Release, ReleaseFile, seal_release


def software_dir(data_dir: Path) -> Path:
    return data_dir / "published" / "software"


def published_sequence(data_dir: Path, target: str) -> int:
    """Sequence number of the release published for ``target`` (0 if none)."""
    path = software_dir(data_dir) / f"{target}.cpenv"
    if not path.exists():
        return 0
    import cbor2

    header, _payload, _signature = cbor2.loads(path.read_bytes())
    return int(cbor2.loads(header)["version"])


def publish_release(data_dir: Path, key: Ed25519PrivateKey, wheels: list[Path], *, target: str, version: str,
                    requirement: str) -> int:
    """Store ``wheels`` by hash and sign the manifest as the next release for ``target``; its sequence."""
    files_dir = software_dir(data_dir) / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for wheel in sorted(wheels):
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        stored = files_dir / f"{digest}.whl"
        if not stored.exists():
            partial = stored.with_suffix(".part")
            shutil.copyfile(wheel, partial)
            partial.replace(stored)
        entries.append(ReleaseFile(name=wheel.name, sha256=digest, size=wheel.stat().st_size))
    release = Release(version=version, target=target, requirement=requirement, files=tuple(entries))
    sequence = published_sequence(data_dir, target) + 1
    blob = seal_release(release, sequence, key)
    open_envelope(blob, SOFTWARE_KIND, [key.public_key()])  # what the devices will check
    write_atomic(software_dir(data_dir) / f"{target}.cpenv", blob)
    return sequence
