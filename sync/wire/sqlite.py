"""One way to write to SQLite from both ends: an IMMEDIATE transaction that commits or rolls back.

``BEGIN IMMEDIATE`` takes the write lock at the start, so a writer never fails half-way with
SQLITE_BUSY after reading (the scan log's single writer and the server's ingest both rely on
that). Connections must be opened with ``isolation_level=None`` (autocommit), so that this is the
only place a transaction starts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def immediate_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` on any exception, which is re-raised."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")  # may fail too (SQLITE_FULL, I/O error): then rolled back like the rest
    except BaseException:
        if db.in_transaction:  # SQLite may already have rolled back (e.g. on SQLITE_FULL)
            db.execute("ROLLBACK")
        raise
