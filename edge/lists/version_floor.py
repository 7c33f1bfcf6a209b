"""Anti-rollback: the highest version of each list kind ever installed, kept apart from the lists.

A list file that no longer opens must not count as "version 0": that would let anyone who can
serve a download (a man in the middle, a hostile server) install an older signed list again, and
with it an issuer key withdrawn because it leaked. So every install raises a floor, written
durably to its own small file, and nothing below the floor is ever installed or served again,
whatever happens to the list files. The floor only moves up; the same version may be installed
again (to repair a damaged file).

If the floor file itself is lost or damaged, the floor is rebuilt from the list files that still
verify (a loud log line says so): it can then only be as low as the newest list still on the card.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Literal

from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic

log = logging.getLogger(__name__)

ListKind = Literal["trust", "policy", "risk", "valuesets"]
KINDS: tuple[ListKind, ...] = ("trust", "policy", "risk", "valuesets")
#: no list version is anywhere near this; a larger one in the file means the file is not ours
MAX_VERSION = 2**53
_WRITE_LOCK = threading.Lock()


class RollbackError(CheckpointError, ValueError):
    """A list older than one this device has already installed was offered or found."""


class VersionFloor:
    """The highest installed version per list kind, in one JSON file replaced atomically (fsync)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._floor: dict[str, int] = self._read()

    def _read(self) -> dict[str, int]:
        floor = dict.fromkeys(KINDS, 0)
        if not self.path.exists():
            return floor
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for kind in KINDS:
                value = data.get(kind, 0)
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VERSION:
                    raise ValueError(f"{kind} version {value!r} is not a version number")
                floor[kind] = value
        except (OSError, ValueError, AttributeError) as exc:
            log.error("event=version_floor_unreadable path=%s error=%r action=rebuilding the floor from the "
                      "lists that still verify; check the SD card", self.path, str(exc))
            return dict.fromkeys(KINDS, 0)
        return floor

    def get(self, kind: ListKind) -> int:
        """The highest version of ``kind`` ever installed here (0 if none)."""
        return self._floor[kind]

    def check(self, kind: ListKind, version: int, what: str = "") -> None:
        """RollbackError if ``version`` is below the floor of ``kind``."""
        floor = self._floor[kind]
        if version < floor:
            raise RollbackError(f"{what or kind} version {version} is older than version {floor}, which this "
                                "device has installed already (rollback refused)")

    def raise_to(self, kind: ListKind, version: int) -> None:
        """Record that ``version`` of ``kind`` is installed (durably; never lowers the floor)."""
        if not 0 <= version <= MAX_VERSION:
            raise ValueError(f"{kind} version {version} is out of range")
        with _WRITE_LOCK:
            if version <= self._floor[kind]:
                return
            # another VersionFloor on the same file (the CLI's risk store and sync client) may have
            # raised other kinds since: merge, so that no kind ever goes down
            on_disk = self._read()
            floor = {k: max(self._floor[k], on_disk[k]) for k in KINDS}
            floor[kind] = max(floor[kind], int(version))
            write_atomic(self.path, json.dumps(floor, sort_keys=True).encode())
            self._floor = floor
        log.info("event=version_floor_raised kind=%s version=%d", kind, version)
