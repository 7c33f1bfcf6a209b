"""Owner-only modes on the server's secrets: data directory 0700, keys and databases 0600.

The data directory holds the publisher key (a new root of trust for every device if stolen), the
key that opens holder hashes, and the scan database. Existing installs made with looser modes are
tightened at start-up, with a log line naming each path.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: SQLite's companions of a database file (same mode as the database)
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int) -> bool:
    """chmod ``path`` to ``mode`` if it grants anything more; True if it changed."""
    try:
        current = stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return False
    if path.is_symlink() or current & ~mode == 0:
        return False
    os.chmod(path, current & mode)
    log.warning("event=permissions_tightened path=%s was=%o now=%o action=none; secrets are owner-only now",
                path, current, current & mode)
    return True


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing; make it 0700."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    _tighten(path, PRIVATE_DIR)
    return path


def secure_data_dir(data_dir: Path) -> None:
    """Tighten an existing data directory and its ``keys/`` to 0700, every file in ``keys/`` to 0600."""
    if not Path(data_dir).is_dir():
        return
    _tighten(Path(data_dir), PRIVATE_DIR)
    keys = Path(data_dir) / "keys"
    if keys.is_dir():
        _tighten(keys, PRIVATE_DIR)
        for entry in keys.iterdir():
            if entry.is_file():
                _tighten(entry, PRIVATE_FILE)


def secure_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it (SQLite gives its -wal and -shm files
    the database's mode); tighten an existing one and its companions."""
    path = Path(path)
    if not path.parent.exists():
        private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    for suffix in SQLITE_SUFFIXES:
        _tighten(path.with_name(path.name + suffix), PRIVATE_FILE)
