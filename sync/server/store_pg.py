"""PostgreSQL server storage (production): COPY into a temp table, then INSERT ... ON CONFLICT DO NOTHING."""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from sync.server.storage import RECORD_COLUMNS, DeviceSummary, StorageError, next_contiguous

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, public_key BYTEA NOT NULL, enrolled_at TEXT NOT NULL,
    last_seen TEXT, acked_seq BIGINT NOT NULL DEFAULT 0, records BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL, seq BIGINT NOT NULL, wall_time TEXT NOT NULL, monotonic DOUBLE PRECISION NOT NULL,
    boot_id TEXT NOT NULL, clock_trusted BOOLEAN NOT NULL, format TEXT, kind TEXT, holder_hash BYTEA,
    holder_enc BYTEA, decision TEXT NOT NULL, reason TEXT NOT NULL, policy_version TEXT, risk_version TEXT,
    prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (device_id, seq));
"""


def split_schema(url: str) -> tuple[str, str | None]:
    """Remove our ``schema=`` query parameter from a PostgreSQL URL; return (conninfo, schema)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    if schema is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise StorageError(f"invalid schema name {schema!r}")
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStorage:
    def __init__(self, url: str):
        conninfo, schema = split_schema(url)
        try:
            self._db = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        if schema:
            self._db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            self._db.execute(f'SET search_path TO "{schema}"')
        self._db.execute(SCHEMA)
        self._lock = threading.Lock()

    def enroll(self, device_id: str, public_key: bytes, *, replace: bool = False) -> bool:
        with self._lock:
            row = self._db.execute("SELECT public_key FROM devices WHERE device_id=%s", (device_id,)).fetchone()
            if row is not None:
                if bytes(row[0]) == public_key:
                    return True
                if not replace:
                    return False
                self._db.execute("UPDATE devices SET public_key=%s WHERE device_id=%s", (public_key, device_id))
                return True
            self._db.execute("INSERT INTO devices (device_id, public_key, enrolled_at) "
                             "VALUES (%s, %s, to_char(now() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))",
                             (device_id, public_key))
            return True

    def device_key(self, device_id: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT public_key FROM devices WHERE device_id=%s", (device_id,)).fetchone()
        return bytes(row[0]) if row else None

    def hashes(self, device_id: str, lo: int, hi: int) -> dict[int, bytes]:
        with self._lock:
            rows = self._db.execute("SELECT seq, hash FROM records WHERE device_id=%s AND seq BETWEEN %s AND %s",
                                    (device_id, lo, hi)).fetchall()
        return {seq: bytes(h) for seq, h in rows}

    def insert(self, device_id: str, rows: list[tuple], seen_at: str) -> tuple[int, int]:
        cols = ", ".join(RECORD_COLUMNS)
        with self._lock, self._db.transaction(), self._db.cursor() as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (LIKE records) ON COMMIT DELETE ROWS")
            with cur.copy(f"COPY incoming ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(f"INSERT INTO records ({cols}) SELECT {cols} FROM incoming ON CONFLICT DO NOTHING")
            stored = cur.rowcount
            cur.execute("SELECT acked_seq FROM devices WHERE device_id=%s FOR UPDATE", (device_id,))
            acked = cur.fetchone()[0]
            cur.execute("SELECT seq FROM records WHERE device_id=%s AND seq > %s ORDER BY seq LIMIT 100000",
                        (device_id, acked))
            acked = next_contiguous(acked, [r[0] for r in cur.fetchall()])
            cur.execute("UPDATE devices SET acked_seq=%s, last_seen=%s, records=records+%s WHERE device_id=%s",
                        (acked, seen_at, stored, device_id))
        return stored, acked

    def acked_seq(self, device_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT acked_seq FROM devices WHERE device_id=%s", (device_id,)).fetchone()
        return row[0] if row else 0

    def fleet(self) -> list[DeviceSummary]:
        with self._lock:
            devices = self._db.execute("SELECT device_id, enrolled_at, last_seen, acked_seq, records FROM devices "
                                       "ORDER BY device_id").fetchall()
            out = []
            for device_id, enrolled, seen, acked, n in devices:
                verdicts = dict(self._db.execute("SELECT decision, COUNT(*) FROM records WHERE device_id=%s "
                                                 "GROUP BY decision", (device_id,)).fetchall())
                beyond = self._db.execute("SELECT COUNT(*) FROM records WHERE device_id=%s AND seq > %s",
                                          (device_id, acked)).fetchone()[0]
                out.append(DeviceSummary(device_id, enrolled, seen, acked, n, beyond, verdicts))
        return out

    def records(self, device_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE device_id=%s ORDER BY seq",
                                    (device_id,)).fetchall()
        out = []
        for r in rows:
            rec = dict(zip(RECORD_COLUMNS, r, strict=True))
            for k in ("holder_hash", "holder_enc", "prev_hash", "hash"):
                if rec[k] is not None:
                    rec[k] = bytes(rec[k])
            rec["clock_trusted"] = int(rec["clock_trusted"])
            out.append(rec)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
