"""SQLite server storage: the embedded default (demo, small fleets)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sync.server.filemodes import secure_sqlite_file
from sync.server.fleet.store import add_to_rollup, hour_counts
from sync.server.migrations import migrate_sqlite
from sync.server.storage import (
    RECORD_COLUMNS,
    SEQS_AFTER,
    ChainHead,
    RecordConflict,
    SQLStorage,
    StaleEpoch,
    StorageError,
    advance_acked,
    check_signer_updated,
    device_after_write,
    head_after_write,
    note_lost,
)
from sync.wire.sqlite import immediate_transaction

_T = TypeVar("_T")


SEQS_HELD = "SELECT seq FROM records WHERE device_id=? AND epoch=? AND seq BETWEEN ? AND ?"


def _noting_hashes(rows: Iterable[tuple], sent: list[tuple[int, bytes]], new: list[tuple],
                   held: set[int]) -> Iterator[tuple]:
    """Pass rows to the insert, noting each (seq, hash) and the rows of seqs not ``held`` before."""
    for row in rows:
        sent.append((row[2], row[16]))
        if row[2] not in held:
            new.append(row)
        yield row


class _Connection(sqlite3.Connection):
    """SQLite's operational failures (locked past the busy timeout, disk full, I/O error) raised as
    StorageError, as PostgreSQL's are: a client gets 503 with a retry, the log says what failed."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise StorageError(f"SQLite error: {exc}") from exc

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            raise StorageError(f"SQLite error: {exc}") from exc


class SQLiteStorage(SQLStorage):
    def __init__(self, path: str | Path, *, create: bool = False):
        path = Path(path)
        if not create and not path.is_file():
            raise StorageError(f"no server database at {path}: create it with 'checkpoint server init' "
                               "(or check --data-dir / --db)")
        secure_sqlite_file(path)  # 0600 before SQLite creates it (and its -wal, -shm); an old one tightened
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30,
                                   factory=_Connection)
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

    def _run_in_transaction(self, work: Callable[[Callable[[str, tuple], list[tuple]]], _T]) -> _T:
        with immediate_transaction(self._db):
            return work(self._all)

    def insert(self, device_id: str, rows: Iterable[tuple], seen_at: str, *, span: tuple[int, int],
               epoch: int = 0, pruned_through: int | None = None,
               signer_key: bytes | None = None) -> tuple[int, int]:
        sql = (f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * len(RECORD_COLUMNS))}) "
               "ON CONFLICT DO NOTHING")
        with self._lock, immediate_transaction(self._db):
            current, acked, top = self._db.execute("SELECT epoch, acked_seq, top_seq FROM devices WHERE device_id=?",
                                                   (device_id,)).fetchone()
            if current != epoch:
                raise StaleEpoch(f"device {device_id} chain forked to epoch {current} meanwhile")
            fast = ChainHead(acked, top, None).follows(span[0])  # nothing held in or after the span
            if pruned_through is not None and pruned_through > acked:
                acked = note_lost(self._all, device_id, epoch, acked, pruned_through,
                                  self._links(self._all, device_id, acked + 1, pruned_through), seen_at)
            # held before this write (another server process may have stored some since ingest read the
            # links): the hourly roll-up counts only the rows this transaction stores
            held = set() if fast else {r[0] for r in self._db.execute(SEQS_HELD, (device_id, epoch, *span))}
            before = self._db.total_changes
            sent: list[tuple[int, bytes]] = []
            counted: list[tuple] = []
            self._db.executemany(sql, _noting_hashes(rows, sent, counted, held))
            stored = self._db.total_changes - before
            if stored < len(sent):  # some seqs were held: by the same records, or it is a conflict
                self._check_same(device_id, epoch, span, sent)
            add_to_rollup(self._db.execute, device_id, hour_counts(counted))
            fast = fast and stored == span[1] - span[0] + 1
            acked = span[1] if fast else advance_acked(acked, span, lambda after, limit: [
                r[0] for r in self._db.execute(SEQS_AFTER, (device_id, epoch, after, limit))])
            top, acked_hash = head_after_write(self._all, device_id, epoch, acked, span, counted, fast)
            updated = self._db.execute(*device_after_write((acked, seen_at, stored, top, acked_hash, device_id),
                                                           signer_key)).rowcount
            check_signer_updated(device_id, signer_key, updated)
        return stored, acked

    def _check_same(self, device_id: str, epoch: int, span: tuple[int, int], sent: list[tuple[int, bytes]]) -> None:
        """Ingest checked what was held before this transaction; a writer that committed in between
        may hold a different record under one of these seqs: refuse the batch (ingest checks it
        again, and forks the chain there) rather than report it as a duplicate."""
        held = dict(self._db.execute("SELECT seq, hash FROM records WHERE device_id=? AND epoch=? "
                                     "AND seq BETWEEN ? AND ?", (device_id, epoch, *span)))
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
                n = self._db.execute("DELETE FROM records WHERE (device_id, epoch, seq) IN (SELECT device_id, epoch, "
                                     "seq FROM records WHERE wall_time < ? LIMIT 10000)", (bound,)).rowcount
            deleted += n
            if n < 10_000:
                return {"deleted": deleted, "kept_from": bound}

    def close(self) -> None:
        with self._lock:
            self._db.close()
