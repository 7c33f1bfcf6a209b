"""SQLite server storage: the embedded default (demo, small fleets)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from sync.server.fleet.store import FLEET_SCHEMA
from sync.server.security_store import security_schema
from sync.server.storage import (
    CHAIN_SCHEMA,
    RECORD_COLUMNS,
    SEQS_AFTER,
    SQLStorage,
    StaleEpoch,
    StorageError,
    advance_acked,
    note_lost,
)
from sync.wire.sqlite import immediate_transaction

_T = TypeVar("_T")

RECORDS_TABLE = """
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL, epoch INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL, wall_time TEXT NOT NULL,
    monotonic REAL NOT NULL, boot_id TEXT NOT NULL, clock_trusted INTEGER NOT NULL, format TEXT, kind TEXT,
    holder_hash BLOB, holder_enc BLOB, decision TEXT NOT NULL, reason TEXT NOT NULL, policy_version TEXT,
    risk_version TEXT, prev_hash BLOB NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (device_id, epoch, seq)) WITHOUT ROWID;
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, enrolled_at TEXT NOT NULL,
    last_seen TEXT, acked_seq INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER NOT NULL DEFAULT 0);
""" + RECORDS_TABLE + CHAIN_SCHEMA


def _add_chain_epochs(db: sqlite3.Connection) -> None:
    """Upgrade a database made before chain epochs (records keyed by device and seq alone)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    if not columns or "epoch" in columns:
        return
    with immediate_transaction(db):
        db.execute("ALTER TABLE devices ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE records RENAME TO records_before_epochs")
        db.execute(RECORDS_TABLE)
        names = ", ".join(c for c in RECORD_COLUMNS if c != "epoch")
        db.execute(f"INSERT INTO records ({names}) SELECT {names} FROM records_before_epochs")
        db.execute("DROP TABLE records_before_epochs")


class SQLiteStorage(SQLStorage):
    def __init__(self, path: str | Path, *, create: bool = False):
        path = Path(path)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # owner only: it holds device keys, holder hashes, sessions
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        elif not path.is_file():
            raise StorageError(f"no server database at {path}: create it with 'checkpoint server init' "
                               "(or check --data-dir / --db)")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        if create:
            self._db.executescript(SCHEMA + security_schema("sqlite") + FLEET_SCHEMA)
        elif self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name IN "
                              "('devices', 'records', 'enroll_tokens', 'audit')").fetchone()[0] != 4:
            self._db.close()
            raise StorageError(f"{path} is not an initialised server database: run 'checkpoint server init'")
        else:
            _add_chain_epochs(self._db)
            self._db.executescript(CHAIN_SCHEMA + FLEET_SCHEMA)
        self._lock = threading.Lock()

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._db.execute(sql, params).fetchall()

    def _exec(self, sql: str, params: tuple = ()) -> None:
        self._db.execute(sql, params)

    def _count(self, sql: str, params: tuple = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def _run_in_transaction(self, work: Callable[[Callable[[str, tuple], list[tuple]]], _T]) -> _T:
        with immediate_transaction(self._db):
            return work(self._all)

    def insert(self, device_id: str, rows: Iterable[tuple], seen_at: str, *, span: tuple[int, int],
               epoch: int = 0, pruned_through: int | None = None) -> tuple[int, int]:
        sql = (f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * len(RECORD_COLUMNS))}) "
               "ON CONFLICT DO NOTHING")
        with self._lock, immediate_transaction(self._db):
            current, acked = self._db.execute("SELECT epoch, acked_seq FROM devices WHERE device_id=?",
                                              (device_id,)).fetchone()
            if current != epoch:
                raise StaleEpoch(f"device {device_id} chain forked to epoch {current} meanwhile")
            if pruned_through is not None:
                acked = note_lost(self._all, device_id, epoch, acked, pruned_through,
                                  self._links(self._all, device_id, acked + 1, pruned_through), seen_at)
            before = self._db.total_changes
            self._db.executemany(sql, rows)
            stored = self._db.total_changes - before
            acked = advance_acked(acked, span, lambda after, limit: [r[0] for r in self._db.execute(
                SEQS_AFTER, (device_id, epoch, after, limit))])
            self._db.execute("UPDATE devices SET acked_seq=?, last_seen=?, records=records+? WHERE device_id=?",
                             (acked, seen_at, stored, device_id))
        return stored, acked

    def close(self) -> None:
        with self._lock:
            self._db.close()
