"""PostgreSQL server storage (production): COPY into a temp table, then INSERT ... ON CONFLICT DO NOTHING."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.adapt import PyFormat

from sync.server import partitions
from sync.server.fleet.store import hour_counts, hour_counts_of, with_rollup
from sync.server.migrations import migrate_postgres
from sync.server.storage import (
    RECORD_COLUMNS,
    SEQS_AFTER,
    ChainHead,
    RecordConflict,
    Replayable,
    SQLStorage,
    StaleEpoch,
    StorageError,
    advance_acked,
    check_signer_updated,
    device_after_write,
    head_after_write,
    note_lost,
)

log = logging.getLogger(__name__)


def split_schema(url: str) -> tuple[str, str | None]:
    """Remove our ``schema=`` query parameter from a PostgreSQL URL; return (conninfo, schema)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    if schema is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
        raise StorageError(f"invalid schema name {schema!r}")
    return urlunsplit(parts._replace(query=rest)), schema


#: PostgreSQL types of RECORD_COLUMNS + scanned_at (the partition key), for binary COPY
COPY_TYPES = ("text", "int4", "int8", "text", "float8", "text", "bool", "text", "text", "bytea", "bytea", "text",
              "text", "text", "text", "bytea", "bytea", "timestamptz")
_COLS = ", ".join((*RECORD_COLUMNS, "scanned_at"))
#: a seq held twice in an epoch within a batch's span: two writers stored different records for it
_DOUBLE_SEQ = ("SELECT seq FROM records WHERE device_id=? AND epoch=? AND seq BETWEEN ? AND ? "
               "GROUP BY seq HAVING COUNT(*) > 1 LIMIT 1")
_T = TypeVar("_T")
#: connections per server process: requests run their queries concurrently (one connection under a
#: lock serialised every round trip and commit of the process); a few are enough to keep the cores
#: busy, more only contend inside PostgreSQL and count against its max_connections
POOL_SIZE = 8


class ConnectionPool:
    """The lock that SQLStorage's queries take (``with storage._lock:``), over up to ``size``
    connections: each block gets a connection of its own for its thread, so up to ``size`` blocks
    run at once and the queries of one block still share one connection (and its transaction).

    A slot is handed out without connecting; ``PostgresStorage._run`` opens (or replaces) the
    connection of the slot, so connection errors surface there, as StorageError.
    """

    def __init__(self, size: int):
        self.size = size
        self._idle: list[psycopg.Connection | None] = [None] * size
        self._cond = threading.Condition()
        self._local = threading.local()

    @property
    def current(self) -> psycopg.Connection | None:
        """The connection lent to this thread (None if not opened yet)."""
        return self._local.db

    @current.setter
    def current(self, db: psycopg.Connection | None) -> None:
        self._local.db = db

    def held(self) -> bool:
        return getattr(self._local, "held", False)

    def __enter__(self) -> ConnectionPool:
        with self._cond:
            while not self._idle:
                self._cond.wait()
            self._local.db = self._idle.pop()
        self._local.held = True
        return self

    def __exit__(self, *exc: object) -> None:
        db, self._local.db, self._local.held = self._local.db, None, False
        with self._cond:
            self._idle.append(db)
            self._cond.notify()

    def connections(self) -> list[psycopg.Connection]:
        """The open connections that are idle or lent to this thread (all of them when no other
        thread is running queries)."""
        with self._cond:
            mine = [self._local.db] if self.held() else []
            return [db for db in (*self._idle, *mine) if db is not None and not db.closed]

    def close(self) -> None:
        with self._cond:
            for db in self._idle:
                if db is not None:
                    db.close()
            self._idle = [None] * len(self._idle)


class PostgresStorage(SQLStorage):
    """A few connections (``ConnectionPool``), each used by one thread at a time; a connection lost
    (server restart, backend killed, network blip) is replaced on the next call, which is retried
    once (every write here is idempotent)."""

    partitioned_records = True  # records are partitioned by month of scanned_at (migration 3)

    def __init__(self, url: str, *, create: bool = False, pool_size: int = POOL_SIZE):
        self._conninfo, self._schema = split_schema(url)
        self._lock = ConnectionPool(pool_size)
        self.concurrency = pool_size
        with self._lock:
            self._lock.current = self._connect(create=create)
            self.schema = migrate_postgres(self._lock.current, f"PostgreSQL schema {self._schema or 'public'}",
                                           create=create)
        self._ensure_partitions()

    def backend_pids(self) -> list[int]:
        """PostgreSQL backend process ids of the open connections (operations and tests)."""
        return [db.info.backend_pid for db in self._lock.connections()]

    def _ensure_partitions(self) -> None:
        """Monthly partitions from last month to a few ahead, and for the months of records that
        landed in the default partition (a device's backlog from long ago); every start-up and
        retention run."""
        with self._lock:
            self._run(lambda db: partitions.maintain(db, datetime.now(UTC)))

    def _connect(self, *, create: bool = False) -> psycopg.Connection:
        try:
            db = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
            if self._schema:
                if create:  # another server process may create it at the same moment
                    with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema):
                        db.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
                db.execute(f'SET search_path TO "{self._schema}"')
            # psycopg maps bytea to its pure-Python ``Binary`` dumper for binary COPY; the C dumper of
            # ``bytes`` does the same job ~4x faster (3 bytea columns per record).
            db.adapters.register_dumper(bytes, db.adapters.get_dumper(bytes, PyFormat.BINARY))
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        return db

    def _run(self, work: Callable[[psycopg.Connection], _T]) -> _T:
        """Run ``work`` on this thread's live connection (the caller holds ``_lock``, or one is taken
        for this call); reconnect and retry once if lost."""
        if not self._lock.held():
            with self._lock:
                return self._run(work)
        pool = self._lock
        for attempt in (1, 2):
            db = pool.current
            if db is None or db.closed or db.broken:
                if db is not None:
                    log.warning("event=pg_reconnect action=the database connection was lost; reconnecting")
                    db.close()
                pool.current = None
                pool.current = db = self._connect()
            try:
                return work(db)
            except psycopg.OperationalError as exc:
                if attempt == 2 or not (db.closed or db.broken):
                    raise StorageError(f"PostgreSQL error: {exc}") from exc
                log.warning("event=pg_connection_lost error=%s action=retrying once on a new connection",
                            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise AssertionError("unreachable")

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        def query(db: psycopg.Connection) -> list[tuple]:
            cur = db.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
        return self._run(query)

    def _exec(self, sql: str, params: tuple = ()) -> None:
        self._run(lambda db: db.execute(sql.replace("?", "%s"), params))

    def _count(self, sql: str, params: tuple = ()) -> int:
        return self._run(lambda db: db.execute(sql.replace("?", "%s"), params).rowcount)

    @staticmethod
    def _copy(cur: psycopg.Cursor, table: str, rows: Iterable[tuple]) -> int:
        n = 0
        scan_time = partitions.scan_time
        with cur.copy(f"COPY {table} ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(COPY_TYPES)
            write = copy.write_row
            for row in rows:
                write((*row, scan_time(row[3])))
                n += 1
        return n

    def _merge_rows(self, cur: psycopg.Cursor, rows: Replayable) -> tuple[int, Counter[tuple[str, str, str]]]:
        """The rows through a temp table + INSERT ... ON CONFLICT DO NOTHING (another writer stored
        some of them); a stored record that differs is a RecordConflict. Returns how many were stored
        and their hourly counts (the roll-up adds only rows this transaction stored)."""
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (LIKE records) ON COMMIT DELETE ROWS")
        self._copy(cur, "incoming", rows)
        cur.execute(f"INSERT INTO records ({_COLS}) SELECT {_COLS} FROM incoming ON CONFLICT DO NOTHING "
                    "RETURNING wall_time, decision, reason")
        counts = hour_counts_of(cur.fetchall())
        stored = cur.rowcount
        differs = cur.execute("SELECT i.seq FROM incoming i JOIN records r ON r.device_id = i.device_id "
                              "AND r.epoch = i.epoch AND r.seq = i.seq WHERE r.hash <> i.hash LIMIT 1").fetchone()
        if differs is not None:
            raise RecordConflict(f"seq {differs[0]} differs from the stored record")
        return stored, counts

    def _run_in_transaction(self, work: Callable[[Callable[[str, tuple], list[tuple]]], _T]) -> _T:
        def in_transaction(db: psycopg.Connection) -> _T:
            with db.transaction():
                return work(self._all)
        return self._run(in_transaction)

    def insert(self, device_id: str, rows: Iterable[tuple], seen_at: str, *, span: tuple[int, int],
               epoch: int = 0, pruned_through: int | None = None,
               signer_key: bytes | None = None) -> tuple[int, int]:
        replayable = Replayable(rows)

        def work(db: psycopg.Connection, merge: bool) -> tuple[int, int]:
            with db.transaction(), db.cursor() as cur:
                def run(sql: str, params: tuple) -> list[tuple]:
                    cur.execute(sql.replace("?", "%s"), params)
                    return cur.fetchall() if cur.description else []
                found = run("SELECT epoch, acked_seq, top_seq FROM devices WHERE device_id=? FOR UPDATE", (device_id,))
                if not found:
                    raise StorageError(f"device {device_id!r} is not enrolled")
                current, acked, top = found[0]
                if current != epoch:
                    raise StaleEpoch(f"device {device_id} chain forked to epoch {current} meanwhile")
                # under the device lock: nothing held in or after the span, so no held record can
                # collide or be doubled, and acked_seq becomes the span's end
                fast = not merge and ChainHead(acked, top, None).follows(span[0])
                if pruned_through is not None and pruned_through > acked:
                    acked = note_lost(run, device_id, epoch, acked, pruned_through,
                                      self._links(run, device_id, acked + 1, pruned_through), seen_at)
                # COPY straight into records, streaming rows while they are checked (ingest checked
                # these seqs were not held); merged if another writer stored one meanwhile
                if merge:
                    stored, counts = self._merge_rows(cur, replayable)
                else:
                    stored = self._copy(cur, "records", replayable)
                    counts = hour_counts(replayable.taken)
                fast = fast and stored == span[1] - span[0] + 1
                if fast:
                    acked = span[1]
                else:
                    # the partition key is in the primary key, so a *different* record for a held seq
                    # (another wall time) would not collide: under the device lock, every writer before
                    # us has committed, and a seq held twice means this batch conflicts
                    double = run(_DOUBLE_SEQ, (device_id, epoch, *span))
                    if double:
                        raise RecordConflict(f"{device_id} seq {double[0][0]} differs from the stored record")
                    acked = advance_acked(acked, span, lambda after, limit: [r[0] for r in run(
                        SEQS_AFTER, (device_id, epoch, after, limit))])
                top, acked_hash = head_after_write(run, device_id, epoch, acked, span, replayable.taken, fast)
                # the device update last, in the statement that ends the write: a revocation or a new
                # key committed while this batch was checked and copied refuses it (rolled back)
                update = device_after_write((acked, seen_at, stored, top, acked_hash, device_id), signer_key)
                for statement in with_rollup(device_id, counts, update):
                    run(*statement)
                check_signer_updated(device_id, signer_key, cur.rowcount)
            return stored, acked
        with self._lock:
            try:
                return self._run(lambda db: work(db, merge=False))
            except psycopg.errors.UniqueViolation:  # rolled back (no savepoint: two round trips a batch)
                log.info("event=pg_copy_conflict action=none; another writer stored some of these records, "
                         "merging")
            return self._run(lambda db: work(db, merge=True))

    def drop_records_before(self, cutoff: datetime, *, dry_run: bool = False) -> dict[str, Any]:
        """Drop whole months of records scanned before ``cutoff`` (and older rows of the default
        partition); make the coming months' partitions."""
        if not dry_run:
            self._ensure_partitions()
        with self._lock:
            result = self._run(lambda db: partitions.drop_before(db, cutoff, dry_run=dry_run))
        return {"dropped_partitions": result.dropped, "deleted_from_default": result.deleted_from_default,
                "kept_from": result.kept_from.isoformat()}

    def close(self) -> None:
        self._lock.close()
