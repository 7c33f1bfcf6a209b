"""Server storage interface and the row shape both back-ends (SQLite, PostgreSQL) share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sync.server.security_store import SecurityQueries
from sync.wire.errors import CheckpointError

#: columns of the server's ``records`` table, in row-tuple order
RECORD_COLUMNS = ("device_id", "seq", "wall_time", "monotonic", "boot_id", "clock_trusted", "format", "kind",
                  "holder_hash", "holder_enc", "decision", "reason", "policy_version", "risk_version",
                  "prev_hash", "hash")


class StorageError(CheckpointError, RuntimeError):
    """The server database is unreachable or refused a write."""


class RecordConflict(StorageError):
    """Another writer stored a different record under a seq of this batch (the batch is rolled back)."""


@dataclass(frozen=True)
class DeviceSummary:
    device_id: str
    enrolled_at: str
    last_seen: str | None
    acked_seq: int
    records: int
    held_beyond_gap: int
    verdicts: dict[str, int]


@dataclass(frozen=True)
class OpsStats:
    """Fleet figures for monitoring, from the devices table alone (cheap at any fleet size)."""

    enrolled: int
    online: int
    silent: int
    held_beyond_gap: int
    records: int


class Storage(Protocol):
    """What the server needs from its database. Every method is safe to call from several threads.

    The SQL back-ends also carry ``SecurityQueries`` (tokens, revocations, users, sessions, audit).
    """

    def enroll(self, device_id: str, public_key: bytes, *, replace: bool = False) -> bool:
        """Register a device key; False if a different key is already enrolled and not ``replace``."""

    def device_key(self, device_id: str) -> bytes | None: ...

    def hashes(self, device_id: str, lo: int, hi: int) -> dict[int, bytes]:
        """Stored record hashes with ``lo <= seq <= hi``."""

    def insert(self, device_id: str, rows: Iterable[tuple], seen_at: str, *,
               span: tuple[int, int]) -> tuple[int, int]:
        """Store rows (RECORD_COLUMNS order) once each, in one transaction; return (newly stored, acked_seq).

        ``rows`` may be a generator that checks records as it goes: it is read to the end inside the
        transaction, and an exception from it rolls everything back and propagates. ``span`` is the
        (first, last) seq of the whole batch: afterwards the server holds every seq in it.
        """

    def acked_seq(self, device_id: str) -> int: ...

    def fleet(self) -> list[DeviceSummary]: ...

    def records(self, device_id: str) -> list[dict[str, Any]]:
        """Every stored record of a device in seq order (audits and tests)."""

    def ops_stats(self, *, online_since: str, silent_before: str) -> OpsStats:
        """Enrolled / online (pushed at or after ``online_since``) / silent devices, backlog, records."""

    def drop_records_before(self, cutoff: datetime, *, dry_run: bool = False) -> dict[str, Any]:
        """Retention: delete records scanned before ``cutoff`` (whole months on PostgreSQL)."""

    def close(self) -> None: ...


def next_contiguous(acked: int, seqs: list[int]) -> int:
    """Advance ``acked`` over sorted ``seqs`` while they follow on without a gap."""
    for seq in seqs:
        if seq == acked + 1:
            acked = seq
        elif seq > acked + 1:
            break
    return acked


class Replayable:
    """Iterate a one-shot row source as often as needed: later passes replay what earlier ones read
    (a retried or re-routed insert must see the rows already streamed)."""

    def __init__(self, rows: Iterable[tuple]):
        self._source = iter(rows)
        self.taken: list[tuple] = []

    def __iter__(self) -> Iterator[tuple]:
        yield from self.taken[:]
        taken, source = self.taken, self._source
        for row in source:
            taken.append(row)
            yield row


#: seqs read per query while advancing acked_seq over records held beyond a gap
ADVANCE_CHUNK = 10_000


def advance_acked(acked: int, span: tuple[int, int], seqs_after: Callable[[int, int], list[int]]) -> int:
    """acked_seq once every seq in ``span`` is held; ``seqs_after(seq, limit)`` lists held seqs > seq.

    If the batch starts at or before ``acked + 1`` the whole span is contiguous with what was acked,
    so only records held beyond its end are read (usually none), not the batch itself.
    """
    lo, hi = span
    start = max(acked, hi) if acked >= lo - 1 else acked
    while True:
        seqs = seqs_after(start, ADVANCE_CHUNK)
        new = next_contiguous(start, seqs)
        if len(seqs) < ADVANCE_CHUNK or new != seqs[-1]:
            return new
        start = new


SEQS_AFTER = "SELECT seq FROM records WHERE device_id=? AND seq > ? ORDER BY seq LIMIT ?"


class SQLStorage(SecurityQueries):
    """Shared queries of the SQL back-ends; subclasses provide ``_all``/``_exec`` and ``insert``.

    SQL is written with ``?`` placeholders; a back-end with another style converts in ``_all``.
    """

    _lock: threading.Lock

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def _exec(self, sql: str, params: tuple = ()) -> None:
        raise NotImplementedError

    def enroll(self, device_id: str, public_key: bytes, *, replace: bool = False) -> bool:
        with self._lock:
            rows = self._all("SELECT public_key FROM devices WHERE device_id=?", (device_id,))
            if rows:
                if bytes(rows[0][0]) == public_key:
                    return True
                if not replace:
                    return False
                self._exec("UPDATE devices SET public_key=? WHERE device_id=?", (public_key, device_id))
                return True
            self._exec("INSERT INTO devices (device_id, public_key, enrolled_at) VALUES (?, ?, ?)",
                       (device_id, public_key, datetime.now(UTC).isoformat(timespec="seconds")))
            return True

    def device_key(self, device_id: str) -> bytes | None:
        with self._lock:
            rows = self._all("SELECT public_key FROM devices WHERE device_id=?", (device_id,))
        return bytes(rows[0][0]) if rows else None

    def hashes(self, device_id: str, lo: int, hi: int) -> dict[int, bytes]:
        with self._lock:
            rows = self._all("SELECT seq, hash FROM records WHERE device_id=? AND seq BETWEEN ? AND ?",
                             (device_id, lo, hi))
        return {seq: bytes(h) for seq, h in rows}

    def acked_seq(self, device_id: str) -> int:
        with self._lock:
            rows = self._all("SELECT acked_seq FROM devices WHERE device_id=?", (device_id,))
        return rows[0][0] if rows else 0

    def fleet(self) -> list[DeviceSummary]:
        with self._lock:
            devices = self._all("SELECT device_id, enrolled_at, last_seen, acked_seq, records FROM devices "
                                "ORDER BY device_id")
            out = []
            for device_id, enrolled, seen, acked, n in devices:
                verdicts = dict(self._all("SELECT decision, COUNT(*) FROM records WHERE device_id=? "
                                          "GROUP BY decision", (device_id,)))
                beyond = self._all("SELECT COUNT(*) FROM records WHERE device_id=? AND seq > ?",
                                   (device_id, acked))[0][0]
                out.append(DeviceSummary(device_id, enrolled, seen, acked, n, beyond, verdicts))
        return out

    def records(self, device_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._all(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE device_id=? ORDER BY seq",
                             (device_id,))
        out = []
        for r in rows:
            rec = dict(zip(RECORD_COLUMNS, r, strict=True))
            for k in ("holder_hash", "holder_enc", "prev_hash", "hash"):
                if rec[k] is not None:
                    rec[k] = bytes(rec[k])
            rec["clock_trusted"] = int(rec["clock_trusted"])
            out.append(rec)
        return out

    def ops_stats(self, *, online_since: str, silent_before: str) -> OpsStats:
        # records - acked_seq: what is held beyond a gap (records counts every row ever stored)
        with self._lock:
            row = self._all(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN last_seen >= ? THEN 1 ELSE 0 END), 0), "
                "COALESCE(SUM(CASE WHEN last_seen IS NULL OR last_seen < ? THEN 1 ELSE 0 END), 0), "
                "COALESCE(SUM(CASE WHEN records > acked_seq THEN records - acked_seq ELSE 0 END), 0), "
                "COALESCE(SUM(records), 0) FROM devices", (online_since, silent_before))[0]
        return OpsStats(*(int(v) for v in row))

    def schema_version(self) -> int:
        with self._lock:
            return int(self._all("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0])


def open_storage(url: str, *, create: bool = False) -> SQLStorage:
    """``sqlite:///path`` or ``postgresql://...[?schema=name]``.

    Only ``create=True`` (``checkpoint server init``) makes a database or its tables; otherwise a
    missing one is a StorageError that says how to create it, so a typo never starts an empty server.
    """
    if url.startswith("sqlite:///"):
        from sync.server.store_sqlite import SQLiteStorage
        return SQLiteStorage(url.removeprefix("sqlite:///"), create=create)
    if url.startswith(("postgresql://", "postgres://")):
        from sync.server.store_pg import PostgresStorage
        return PostgresStorage(url, create=create)
    raise StorageError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")
