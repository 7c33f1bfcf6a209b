"""SQLite server storage: the embedded default (demo, small fleets)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sync.server.filemodes import secure_sqlite_file
from sync.server.migrations import migrate_sqlite
from sync.server.storage import RECORD_COLUMNS, SEQS_AFTER, RecordConflict, SQLStorage, StorageError, advance_acked
from sync.wire.sqlite import immediate_transaction


def _noting_hashes(rows: Iterable[tuple], sent: list[tuple[int, bytes]]) -> Iterator[tuple]:
    for row in rows:
        sent.append((row[1], row[15]))
        yield row


class SQLiteStorage(SQLStorage):
    def __init__(self, path: str | Path, *, create: bool = False):
        path = Path(path)
        if not create and not path.is_file():
            raise StorageError(f"no server database at {path}: create it with 'checkpoint server init' "
                               "(or check --data-dir / --db)")
        secure_sqlite_file(path)  # 0600 before SQLite creates it (and its -wal, -shm); an old one tightened
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            self.schema = migrate_sqlite(self._db, f"SQLite database {path}", create=create)
        except BaseException:
            self._db.close()
            raise
        self._lock = threading.Lock()

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._db.execute(sql, params).fetchall()

    def _exec(self, sql: str, params: tuple = ()) -> None:
        self._db.execute(sql, params)

    def _count(self, sql: str, params: tuple = ()) -> int:
        return self._db.execute(sql, params).rowcount

    def insert(self, device_id: str, rows: Iterable[tuple], seen_at: str, *,
               span: tuple[int, int]) -> tuple[int, int]:
        sql = (f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * len(RECORD_COLUMNS))}) "
               "ON CONFLICT DO NOTHING")
        with self._lock, immediate_transaction(self._db):
            before = self._db.total_changes
            sent: list[tuple[int, bytes]] = []
            self._db.executemany(sql, _noting_hashes(rows, sent))
            stored = self._db.total_changes - before
            if stored < len(sent):  # some seqs were held: by the same records, or it is a conflict
                self._check_same(device_id, span, sent)
            acked = self._db.execute("SELECT acked_seq FROM devices WHERE device_id=?", (device_id,)).fetchone()[0]
            acked = advance_acked(acked, span, lambda after, limit: [r[0] for r in self._db.execute(
                SEQS_AFTER, (device_id, after, limit))])
            self._db.execute("UPDATE devices SET acked_seq=?, last_seen=?, records=records+? WHERE device_id=?",
                             (acked, seen_at, stored, device_id))
        return stored, acked

    def _check_same(self, device_id: str, span: tuple[int, int], sent: list[tuple[int, bytes]]) -> None:
        """Ingest checked ``held`` before this transaction; a writer that committed in between may
        hold a different record under one of these seqs: refuse the batch rather than report it as
        a duplicate."""
        held = dict(self._db.execute("SELECT seq, hash FROM records WHERE device_id=? AND seq BETWEEN ? AND ?",
                                     (device_id, *span)))
        for seq, digest in sent:
            if bytes(held[seq]) != digest:
                raise RecordConflict(f"{device_id} seq {seq} differs from the stored record")

    def drop_records_before(self, cutoff: datetime, *, dry_run: bool = False) -> dict[str, Any]:
        """Delete records whose wall time is before ``cutoff`` (device times are UTC ISO strings,
        which sort as text), in chunks so ingest is never blocked for long."""
        bound = cutoff.astimezone(UTC).isoformat(timespec="microseconds")
        if dry_run:
            with self._lock:
                n = self._db.execute("SELECT COUNT(*) FROM records WHERE wall_time < ?", (bound,)).fetchone()[0]
            return {"deleted": n, "kept_from": bound}
        deleted = 0
        while True:
            with self._lock:
                n = self._db.execute("DELETE FROM records WHERE (device_id, seq) IN (SELECT device_id, seq "
                                     "FROM records WHERE wall_time < ? LIMIT 10000)", (bound,)).rowcount
            deleted += n
            if n < 10_000:
                return {"deleted": deleted, "kept_from": bound}

    def close(self) -> None:
        with self._lock:
            self._db.close()
