"""Schema versions of the device's SQLite files: numbered migrations, applied once, in order, atomically.

The version lives in SQLite's own ``PRAGMA user_version`` (in the file header, transactional). A
migration is applied inside one ``BEGIN IMMEDIATE`` transaction together with its version bump, so
a power cut leaves the file at the old version or the new one, never between; two processes opening
the file at once apply it once (the version is read again under the write lock).

Software updates roll back (a new release that fails its health check is switched back to the old
one), so a file may meet software older than itself. Migrations that only add things (a table, an
index, a column with a default) are marked ``additive``: older software still reads and writes the
file. A migration that is not additive records itself in ``meta.schema_min_reader``, and older
software then refuses the file with a message instead of misreading it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from sync.wire.errors import CheckpointError
from sync.wire.sqlite import immediate_transaction

log = logging.getLogger(__name__)

MIN_READER_KEY = "schema_min_reader"


class SchemaError(CheckpointError):
    """A device database cannot be brought to (or used at) the schema this software knows."""


@dataclass(frozen=True)
class Migration:
    """One step: ``sql`` takes the file from ``version - 1`` to ``version``."""

    version: int
    sql: str
    why: str
    #: only adds things: software that knows an older version can still use the file
    additive: bool = True


def statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (trigger bodies included), as SQLite parses them."""
    found, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement: {current.strip()[:80]!r}")
    return found


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration], *, name: str, upto: int | None = None) -> int:
    """Bring ``db`` (autocommit mode, ``isolation_level=None``) up to date; return its schema version.

    ``upto`` stops early (tests build an older file this way). Raises SchemaError when the file is
    newer than this software and not usable by it.
    """
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise ValueError("migrations must be numbered 1, 2, 3, ... without gaps")
    latest = migrations[-1].version if migrations else 0
    target = latest if upto is None else upto
    current = user_version(db)
    if current > latest:
        _check_newer(db, current, latest, name)
        return current
    for migration in migrations[current:target]:
        with immediate_transaction(db):
            if user_version(db) >= migration.version:  # another process migrated meanwhile
                continue
            for statement in statements(migration.sql):
                db.execute(statement)
            if not migration.additive:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                           (MIN_READER_KEY, str(migration.version)))
            db.execute(f"PRAGMA user_version = {int(migration.version)}")
        log.info("event=schema_migrated db=%s version=%d why=%r", name, migration.version, migration.why)
    return user_version(db)


def _check_newer(db: sqlite3.Connection, current: int, latest: int, name: str) -> None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (MIN_READER_KEY,)).fetchone()
    except sqlite3.OperationalError:
        row = None
    min_reader = int(row[0]) if row else 1
    if min_reader > latest:
        raise SchemaError(f"{name} is at schema version {current} and needs software that knows version "
                          f"{min_reader} or later; this software knows {latest}. Install the newer release "
                          "again (the file is kept as it is)")
    log.warning("event=schema_newer db=%s version=%d known=%d action=none: the newer changes are additive",
                name, current, latest)
