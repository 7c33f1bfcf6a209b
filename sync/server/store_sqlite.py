"""SQLite server storage: the embedded default (demo, small fleets)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from sync.server.storage import RECORD_COLUMNS, DeviceSummary, next_contiguous

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, enrolled_at TEXT NOT NULL,
    last_seen TEXT, acked_seq INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, wall_time TEXT NOT NULL, monotonic REAL NOT NULL,
    boot_id TEXT NOT NULL, clock_trusted INTEGER NOT NULL, format TEXT, kind TEXT, holder_hash BLOB,
    holder_enc BLOB, decision TEXT NOT NULL, reason TEXT NOT NULL, policy_version TEXT, risk_version TEXT,
    prev_hash BLOB NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (device_id, seq)) WITHOUT ROWID;
"""


class SQLiteStorage:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def enroll(self, device_id: str, public_key: bytes, *, replace: bool = False) -> bool:
        with self._lock:
            row = self._db.execute("SELECT public_key FROM devices WHERE device_id=?", (device_id,)).fetchone()
            if row is not None:
                if row[0] == public_key:
                    return True
                if not replace:
                    return False
                self._db.execute("UPDATE devices SET public_key=? WHERE device_id=?", (public_key, device_id))
                return True
            self._db.execute("INSERT INTO devices (device_id, public_key, enrolled_at) "
                             "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%SZ','now'))", (device_id, public_key))
            return True

    def device_key(self, device_id: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT public_key FROM devices WHERE device_id=?", (device_id,)).fetchone()
        return row[0] if row else None

    def hashes(self, device_id: str, lo: int, hi: int) -> dict[int, bytes]:
        with self._lock:
            return dict(self._db.execute("SELECT seq, hash FROM records WHERE device_id=? AND seq BETWEEN ? AND ?",
                                         (device_id, lo, hi)))

    def insert(self, device_id: str, rows: list[tuple], seen_at: str) -> tuple[int, int]:
        sql = (f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES ({', '.join('?' * len(RECORD_COLUMNS))}) "
               "ON CONFLICT DO NOTHING")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany(sql, rows)
                stored = self._db.total_changes - before
                acked = self._db.execute("SELECT acked_seq FROM devices WHERE device_id=?", (device_id,)).fetchone()[0]
                seqs = [r[0] for r in self._db.execute(
                    "SELECT seq FROM records WHERE device_id=? AND seq > ? ORDER BY seq LIMIT 100000",
                    (device_id, acked))]
                acked = next_contiguous(acked, seqs)
                self._db.execute("UPDATE devices SET acked_seq=?, last_seen=?, records=records+? WHERE device_id=?",
                                 (acked, seen_at, stored, device_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return stored, acked

    def acked_seq(self, device_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT acked_seq FROM devices WHERE device_id=?", (device_id,)).fetchone()
        return row[0] if row else 0

    def fleet(self) -> list[DeviceSummary]:
        with self._lock:
            devices = self._db.execute("SELECT device_id, enrolled_at, last_seen, acked_seq, records FROM devices "
                                       "ORDER BY device_id").fetchall()
            out = []
            for device_id, enrolled, seen, acked, n in devices:
                verdicts = dict(self._db.execute("SELECT decision, COUNT(*) FROM records WHERE device_id=? "
                                                 "GROUP BY decision", (device_id,)))
                beyond = self._db.execute("SELECT COUNT(*) FROM records WHERE device_id=? AND seq > ?",
                                          (device_id, acked)).fetchone()[0]
                out.append(DeviceSummary(device_id, enrolled, seen, acked, n, beyond, verdicts))
        return out

    def records(self, device_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE device_id=? ORDER BY seq",
                                    (device_id,)).fetchall()
        return [dict(zip(RECORD_COLUMNS, r, strict=True)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
