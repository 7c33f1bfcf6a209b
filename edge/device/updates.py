"""Software updates on the device: stage a signed release, install it beside the running one, switch
only after it passes a health check, switch back otherwise.

Two halves, two privileges. The daemon's sync client (sandboxed, writes only its data folder)
*stages*: it checks the signed manifest against the pinned publisher key, downloads each wheel by
hash, checks size and SHA-256, and writes the manifest last (``staged.cpenv``). The installer
(``checkpoint update apply``, run as root by checkpoint-update.service when that file changes)
*applies*: it checks everything again (it trusts no file the daemon user could write), installs the
release offline into ``PREFIX/releases/<sequence>`` (a new venv with the system site packages, the
target's constraints, ``--no-index``), runs the new release's own ``config check`` and ``doctor``
(keys, lists, disk), then swaps the ``PREFIX/current`` symlink atomically and restarts the daemon.
If the daemon does not report a healthy running state in time, ``current`` goes back to the previous
release and the daemon is restarted on it. Scan log, keys and lists live in the data folder and
/etc, outside any release, so both releases use the same ones; the scan log's schema migrations are
additive so the previous release can still open a file the new one migrated.

Why not RAUC or Mender: both update the whole root file system (A/B partitions), which needs a
repartitioned image, a bootloader integration (the Pi's tryboot) and a server of their own (Mender)
or a bundle-signing infrastructure (RAUC). What changes on a checkpoint is one Python application,
a few MB of wheels; the OS gets its security updates from apt (unattended-upgrades). An application
channel signed by the key every device already pins, over the sync connection it already has, is
the smaller thing to run for a provincial IT team. RAUC would be the choice once OS images themselves
must be rolled out remotely.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sync.wire.envelope import EnvelopeError
from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic
from sync.wire.software import Release, open_release

log = logging.getLogger(__name__)

STAGED = "staged.cpenv"
APPLIED = "applied.json"
#: chunk size of a wheel download (the daemon never holds a whole wheel in memory)
CHUNK = 1 << 20


class UpdateError(CheckpointError):
    """A release cannot be staged or installed; the running release stays as it is."""


def _sequence_of(path: Path, keys: list[Ed25519PublicKey]) -> int:
    try:
        return open_release(path.read_bytes(), keys)[0]
    except (OSError, EnvelopeError):
        return 0


def applied_record(staging: Path) -> dict:
    try:
        data = json.loads((staging / APPLIED).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(folder: Path, release: Release) -> None:
    """Every wheel of ``release`` is in ``folder`` with its size and SHA-256; UpdateError otherwise."""
    for item in release.files:
        path = folder / item.name
        if not path.is_file() or path.stat().st_size != item.size or file_digest(path) != item.sha256:
            raise UpdateError(f"release {release.version}: {item.name} is missing or does not match the signed "
                              "manifest (tampered or cut short): it will be downloaded again")


#: download one release file by hash into the given path (the sync client's signed, streamed GET)
Fetch = Callable[[str, Path], None]


@dataclass
class ReleaseStager:
    """The daemon's half: keep the newest signed release for ``target`` staged in ``staging``."""

    staging: Path
    target: str
    publisher_keys: list[Ed25519PublicKey]

    def have(self) -> int:
        """The newest release sequence staged or already applied (the server sends only newer ones)."""
        applied = applied_record(self.staging).get("sequence", 0)
        staged = _sequence_of(self.staging / STAGED, self.publisher_keys)
        return max(staged, applied if isinstance(applied, int) else 0)

    def stage(self, blob: bytes, fetch: Fetch) -> int:
        """Check the manifest, download and check every wheel, then write the manifest; its sequence."""
        sequence, release = open_release(blob, self.publisher_keys)
        if release.target != self.target:
            raise EnvelopeError(f"release {release.version} is for {release.target}, this device runs {self.target}")
        have = self.have()
        if sequence <= have:
            raise EnvelopeError(f"release sequence {sequence} is not newer than {have} (rollback?)")
        folder = self.staging / str(sequence)
        folder.mkdir(parents=True, exist_ok=True)
        for item in release.files:
            path = folder / item.name
            if path.is_file() and path.stat().st_size == item.size and file_digest(path) == item.sha256:
                continue
            partial = path.with_name(path.name + ".part")
            fetch(item.sha256, partial)
            if partial.stat().st_size != item.size or file_digest(partial) != item.sha256:
                partial.unlink(missing_ok=True)
                raise UpdateError(f"release {release.version}: {item.name} does not match the signed manifest")
            partial.replace(path)
        write_atomic(self.staging / STAGED, blob)
        log.info("event=release_staged version=%s sequence=%d files=%d action=the installer "
                 "(checkpoint-update.service) installs it beside the running release", release.version,
                 sequence, len(release.files))
        return sequence


def install_release(prefix: Path, sequence: int, wheels: Path, release: Release) -> Path:
    """A new venv at PREFIX/releases/SEQUENCE with ``release`` installed offline from ``wheels``; its folder.

    Installed under its final name (a venv is not relocatable); nothing points at it until the
    health check passed and ``current`` is swapped, so a half-finished install is never run.
    """
    target = prefix / "releases" / str(sequence)
    if target.exists():  # left by an attempt that failed before the switch: nothing runs from it
        shutil.rmtree(target)
    subprocess.run(["python3", "-m", "venv", "--system-site-packages", str(target)], check=True,
                   capture_output=True, text=True)
    command = [str(target / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "--no-index", "--find-links", str(wheels), "--find-links", str(prefix / "wheels")]
    constraints = prefix / "constraints.txt"
    if constraints.exists():
        command += ["-c", str(constraints)]
    done = subprocess.run([*command, release.requirement], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise UpdateError(f"release {release.version} does not install: {done.stderr.strip()[-400:]}")
    return target


#: (prefix, sequence, wheels folder, release) -> the installed release folder, raising UpdateError
Install = Callable[[Path, int, Path, Release], Path]


@dataclass
class Installer:
    """The root half: apply the staged release with a health check and a way back."""

    prefix: Path
    staging: Path
    config_path: Path
    publisher_keys: list[Ed25519PublicKey]
    #: restart the daemon (systemctl restart checkpoint.service)
    restart: Callable[[], None]
    #: True once the restarted daemon runs healthily (status file fresh, state running)
    healthy: Callable[[float], bool]
    install: Install = install_release
    health_timeout_s: float = 120.0

    @property
    def current(self) -> Path:
        return self.prefix / "current"

    def apply(self) -> str:
        """Install the staged release if newer than the last applied one; what happened, in a word."""
        try:
            blob = (self.staging / STAGED).read_bytes()
        except FileNotFoundError:
            return "nothing_staged"
        sequence, release = open_release(blob, self.publisher_keys)  # again: the daemon user wrote it
        last = applied_record(self.staging).get("sequence", 0)
        if isinstance(last, int) and sequence <= last:
            return "up_to_date"
        verify_files(self.staging / str(sequence), release)
        previous = self.current.resolve() if self.current.exists() else None
        try:
            folder = self.install(self.prefix, sequence, self.staging / str(sequence), release)
            self._check_release(folder)
        except (UpdateError, subprocess.SubprocessError, OSError) as exc:
            self._record(sequence, release, "refused", str(exc))
            log.error("event=release_refused version=%s error=%s action=the running release stays; publish a "
                      "fixed release", release.version, exc)
            return "refused"
        self._switch(folder)
        started = time.time()
        self.restart()
        if self.healthy(started):
            self._record(sequence, release, "installed", "")
            log.info("event=release_installed version=%s sequence=%d", release.version, sequence)
            return "installed"
        if previous is not None:
            self._switch(previous)
            self.restart()
        self._record(sequence, release, "rolled_back", "the daemon did not become healthy")
        log.error("event=release_rolled_back version=%s sequence=%d action=back on %s; see the journal of the "
                  "failed start", release.version, sequence, previous)
        return "rolled_back"

    def _check_release(self, folder: Path) -> None:
        """The new release's own tools accept this device's config, keys, lists and disk."""
        binary = str(folder / "bin" / "checkpoint")
        for args in (["config", "check", str(self.config_path)],
                     ["doctor", "--config", str(self.config_path), "--only", "keys", "--only", "lists",
                      "--only", "disk"]):
            done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise UpdateError(f"health check '{' '.join(args[:2])}' of the new release failed: "
                                  f"{(done.stdout + done.stderr).strip()[-400:]}")

    def _switch(self, folder: Path) -> None:
        """Point ``current`` at ``folder`` in one rename (a reader sees the old or the new, never none)."""
        temporary = self.prefix / f".current.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(folder)
        temporary.replace(self.current)

    def _record(self, sequence: int, release: Release, outcome: str, detail: str) -> None:
        write_atomic(self.staging / APPLIED, json.dumps({
            "sequence": sequence, "version": release.version, "outcome": outcome, "detail": detail[:500],
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())
