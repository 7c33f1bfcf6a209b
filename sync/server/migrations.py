"""Versioned schema migrations of the server database, SQLite and PostgreSQL alike.

Every server process runs ``migrate_*`` when it opens its database: pending steps are applied in
order, each recorded in ``schema_migrations``, all in one transaction (DDL is transactional on
both engines), so a crash leaves the old schema or the new one, never half. On PostgreSQL an
advisory lock makes N processes starting together apply each step once. A database made before
migrations existed (tables but no ``schema_migrations``) is adopted as version 1, the schema it
has. A database newer than this code is refused: an older server must not write to it.

Hand-written rather than Alembic: the storage layer is plain DB-API (sqlite3, psycopg) without
SQLAlchemy, and the steps are few and engine-specific anyway (declarative partitioning).
To change the schema, append a ``Migration``; never edit a released one.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync.server import partitions
from sync.server.fleet.store import FLEET_SCHEMA, ROLLUP_SCHEMA
from sync.server.security_store import security_schema
from sync.server.storage import CHAIN_SCHEMA, RECORD_COLUMNS, StorageError
from sync.server.trace import covering_trace_step
from sync.wire.sqlite import immediate_transaction

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key: "checkpoint schema migrations"
PG_LOCK_KEY = 0x636B_7074_6D69_67


class SchemaError(StorageError):
    """The database schema cannot be used by this server (newer than the code, or a failed step)."""


SQLITE_V1 = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, enrolled_at TEXT NOT NULL,
    last_seen TEXT, acked_seq INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL, seq INTEGER NOT NULL, wall_time TEXT NOT NULL, monotonic REAL NOT NULL,
    boot_id TEXT NOT NULL, clock_trusted INTEGER NOT NULL, format TEXT, kind TEXT, holder_hash BLOB,
    holder_enc BLOB, decision TEXT NOT NULL, reason TEXT NOT NULL, policy_version TEXT, risk_version TEXT,
    prev_hash BLOB NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (device_id, seq)) WITHOUT ROWID;
"""

POSTGRES_V1 = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, public_key BYTEA NOT NULL, enrolled_at TEXT NOT NULL,
    last_seen TEXT, acked_seq BIGINT NOT NULL DEFAULT 0, records BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL, seq BIGINT NOT NULL, wall_time TEXT NOT NULL, monotonic DOUBLE PRECISION NOT NULL,
    boot_id TEXT NOT NULL, clock_trusted BOOLEAN NOT NULL, format TEXT, kind TEXT, holder_hash BYTEA,
    holder_enc BYTEA, decision TEXT NOT NULL, reason TEXT NOT NULL, policy_version TEXT, risk_version TEXT,
    prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (device_id, seq));
"""

#: v2: chain epochs (a device's log that went back is filed under a new epoch): records keyed
#: (device_id, epoch, seq), the device's current epoch, and the ``epochs`` / ``lost_records`` tables.
#: Idempotent, because servers before migrations upgraded in place at open.
SQLITE_V2_RECORDS = """
CREATE TABLE IF NOT EXISTS records (
    device_id TEXT NOT NULL, epoch INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL, wall_time TEXT NOT NULL,
    monotonic REAL NOT NULL, boot_id TEXT NOT NULL, clock_trusted INTEGER NOT NULL, format TEXT, kind TEXT,
    holder_hash BLOB, holder_enc BLOB, decision TEXT NOT NULL, reason TEXT NOT NULL, policy_version TEXT,
    risk_version TEXT, prev_hash BLOB NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (device_id, epoch, seq)) WITHOUT ROWID
"""

POSTGRES_V2 = """
ALTER TABLE devices ADD COLUMN IF NOT EXISTS epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN IF NOT EXISTS epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE records DROP CONSTRAINT IF EXISTS records_pkey;
ALTER TABLE records ADD PRIMARY KEY (device_id, epoch, seq);
""" + CHAIN_SCHEMA


def _sqlite_v2(db: sqlite3.Connection) -> None:
    if "epoch" not in {row[1] for row in db.execute("PRAGMA table_info(devices)")}:
        db.execute("ALTER TABLE devices ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")
    if "epoch" not in {row[1] for row in db.execute("PRAGMA table_info(records)")}:
        db.execute("ALTER TABLE records RENAME TO records_before_epochs")
        db.execute(SQLITE_V2_RECORDS)
        names = ", ".join(c for c in RECORD_COLUMNS if c != "epoch")
        db.execute(f"INSERT INTO records ({names}) SELECT {names} FROM records_before_epochs")
        db.execute("DROP TABLE records_before_epochs")
    for statement in CHAIN_SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


#: v3 on PostgreSQL: ``records`` becomes a table partitioned by month of scan time (``scanned_at``,
#: the device's wall time parsed; unparseable times land in the default partition at the epoch).
#: The primary key must contain the partition key; identical records still collide (the same
#: record has the same wall time), and ingest checks that no seq is held twice in an epoch.
POSTGRES_V3 = """
CREATE OR REPLACE FUNCTION pg_temp.scan_time(wall TEXT) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    RETURN wall::timestamptz;
EXCEPTION WHEN others THEN
    RETURN 'epoch'::timestamptz;
END $$;
ALTER TABLE records RENAME TO records_v2;
ALTER INDEX records_pkey RENAME TO records_v2_pkey;
CREATE TABLE records (
    device_id TEXT NOT NULL, epoch INTEGER NOT NULL DEFAULT 0, seq BIGINT NOT NULL, wall_time TEXT NOT NULL,
    monotonic DOUBLE PRECISION NOT NULL, boot_id TEXT NOT NULL, clock_trusted BOOLEAN NOT NULL, format TEXT,
    kind TEXT, holder_hash BYTEA, holder_enc BYTEA, decision TEXT NOT NULL, reason TEXT NOT NULL,
    policy_version TEXT, risk_version TEXT, prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL,
    scanned_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device_id, epoch, seq, scanned_at)) PARTITION BY RANGE (scanned_at);
CREATE TABLE records_default PARTITION OF records DEFAULT;
"""

_V2_COLUMNS = ", ".join(RECORD_COLUMNS)
POSTGRES_V3_COPY = f"""
INSERT INTO records ({_V2_COLUMNS}, scanned_at)
    SELECT {_V2_COLUMNS}, pg_temp.scan_time(wall_time) FROM records_v2;
DROP TABLE records_v2;
"""


#: v8: ``storage.ChainHead`` columns, unknown (NULL) until a device's next push sets them
CHAIN_HEAD_SQLITE = """
ALTER TABLE devices ADD COLUMN top_seq INTEGER;
ALTER TABLE devices ADD COLUMN acked_hash BLOB;
"""
CHAIN_HEAD_POSTGRES = """
ALTER TABLE devices ADD COLUMN IF NOT EXISTS top_seq BIGINT;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS acked_hash BYTEA;
"""


@dataclass(frozen=True)
class Migration:
    """One schema step; ``None`` for an engine means the step changes nothing there. A callable runs
    inside the migration transaction."""

    version: int
    name: str
    sqlite: str | Callable[[sqlite3.Connection], None] | None
    postgres: str | Callable[[psycopg.Connection], None] | None


def _postgres_v3(db: psycopg.Connection) -> None:
    db.execute("SET LOCAL TimeZone = 'UTC'")
    db.execute(POSTGRES_V3)
    # monthly partitions for the months the existing records fall in (sane years only) and around now,
    # made before the copy so the rows go straight to their partition
    months = [row[0] for row in db.execute(
        "SELECT DISTINCT date_trunc('month', pg_temp.scan_time(wall_time)) FROM records_v2").fetchall()]
    partitions.ensure(db, [m for m in months if m is not None and partitions.SANE_FROM <= m < partitions.SANE_TO])
    partitions.ensure_around(db, datetime.now(UTC))
    db.execute(POSTGRES_V3_COPY)


#: the schema, step by step; to change it, append a step (``CREATE ... IF NOT EXISTS`` where a server
#: from before migrations may already have made it)
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline: devices and records (the schema before migrations)", SQLITE_V1, POSTGRES_V1),
    Migration(2, "chain epochs: records keyed by device, epoch and seq; epochs and lost records", _sqlite_v2,
              POSTGRES_V2),
    Migration(3, "records partitioned by month of scan time (PostgreSQL)", None, _postgres_v3),
    Migration(4, "enrollment tokens, revocations, users, sessions, audit", security_schema("sqlite"),
              security_schema("postgresql")),
    Migration(5, "device heartbeats; record indexes for tracing (holder, time) and the fleet view (device, time)",
              FLEET_SCHEMA, FLEET_SCHEMA),
    Migration(6, "hourly roll-up of decisions per device (and for the fleet), kept by ingest; filled from the "
              "records held", ROLLUP_SCHEMA, ROLLUP_SCHEMA),
    # the index build holds the records' write lock: on a large database this step takes minutes
    Migration(7, "trace indexes cover what the trace queries read (index-only scans), replacing step 5's",
              covering_trace_step("sqlite"), covering_trace_step("postgresql")),
    Migration(8, "chain head on the device row (top seq held, hash at acked_seq): a push that extends the chain "
              "reads and checks no records", CHAIN_HEAD_SQLITE, CHAIN_HEAD_POSTGRES),
)
LATEST = MIGRATIONS[-1].version

_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                  "applied_at TEXT NOT NULL)")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_not_newer(current: int, where: str) -> None:
    if current > LATEST:
        raise SchemaError(f"{where}: database schema version {current} is newer than this server knows "
                          f"({LATEST}); run the newer server version, or restore a backup made for this one")


def _pending(current: int) -> list[Migration]:
    return [m for m in MIGRATIONS if m.version > current]


def _refuse_empty(has_versions: object, has_records: object, create: bool, where: str) -> None:
    if not create and not has_versions and not has_records:
        raise SchemaError(f"{where} has no server tables: create them with 'checkpoint server init' "
                          "(or check the database URL)")


@dataclass(frozen=True)
class _Engine:
    """What differs between the engines when steps are applied: how the whole run is made one
    transaction (and, on PostgreSQL, one process at a time), how a table is found, the parameter
    placeholder, and how a step's SQL script is run."""

    name: str
    transaction: Callable[[Any], AbstractContextManager[object]]
    has_table: Callable[[Any, str], bool]
    placeholder: str
    step: Callable[[Migration], str | Callable[[Any], None] | None]
    run_script: Callable[[Any, str], None]


@contextmanager
def _pg_transaction(db: psycopg.Connection) -> Iterator[None]:
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (PG_LOCK_KEY,))
        yield


def _sqlite_script(db: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):  # sqlite3 runs one statement per execute
        if statement.strip():
            db.execute(statement)


_SQLITE = _Engine("sqlite", immediate_transaction,
                  lambda db, name: db.execute("SELECT 1 FROM sqlite_master WHERE name=?", (name,)).fetchone()
                  is not None, "?", lambda m: m.sqlite, _sqlite_script)
_POSTGRES = _Engine("postgresql", _pg_transaction,
                    lambda db, name: db.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None,
                    "%s", lambda m: m.postgres, lambda db, script: db.execute(script))


def _migrate(db: Any, engine: _Engine, where: str, create: bool) -> int:
    """Apply the pending steps in one transaction; return the version."""
    record = f"INSERT INTO schema_migrations VALUES ({', '.join([engine.placeholder] * 3)})"
    with engine.transaction(db):
        has_versions = engine.has_table(db, "schema_migrations")
        has_records = engine.has_table(db, "records")
        _refuse_empty(has_versions, has_records, create, where)
        db.execute(_VERSION_TABLE)
        if not has_versions and has_records:
            db.execute(record, (1, f"adopted: {MIGRATIONS[0].name}", _now()))
        current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
        _check_not_newer(current, where)
        for step in _pending(current):
            change = engine.step(step)
            if callable(change):
                change(db)
            elif change:
                engine.run_script(db, change)
            db.execute(record, (step.version, step.name, _now()))
            log.info("event=schema_migrated engine=%s version=%d name=%r", engine.name, step.version, step.name)
    return max(current, LATEST)


def migrate_sqlite(db: sqlite3.Connection, where: str = "SQLite", *, create: bool = True) -> int:
    """Bring an SQLite server database (autocommit connection) to ``LATEST``; return the version.
    ``create=False``: a database without the server's tables is refused, not filled."""
    return _migrate(db, _SQLITE, where, create)


def migrate_postgres(db: psycopg.Connection, where: str = "PostgreSQL", *, create: bool = True) -> int:
    """Bring a PostgreSQL server schema (``search_path`` set) to ``LATEST``; return the version.

    Several processes may call this at once: the advisory lock serialises them, and the later ones
    find nothing pending. ``create=False``: a schema without the server's tables is refused.
    """
    return _migrate(db, _POSTGRES, where, create)


def schema_version(rows: list[tuple]) -> int:
    """The version recorded in ``schema_migrations`` rows ``(version,)`` (0 for none)."""
    return max((r[0] for r in rows), default=0)
