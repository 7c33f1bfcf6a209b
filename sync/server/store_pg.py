"""PostgreSQL server storage (production): COPY into a temp table, then INSERT ... ON CONFLICT DO NOTHING."""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from sync.server.storage import RECORD_COLUMNS, SQLStorage, StorageError, next_contiguous

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


class PostgresStorage(SQLStorage):
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

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._db.execute(sql.replace("?", "%s"), params).fetchall()

    def _exec(self, sql: str, params: tuple = ()) -> None:
        self._db.execute(sql.replace("?", "%s"), params)

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
