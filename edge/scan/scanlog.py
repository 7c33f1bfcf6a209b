"""The durable scan log: one append-only, hash-chained SQLite record per decision.

A record is committed (WAL, ``synchronous=FULL``) before ``append`` returns, and the daemon
lights the lamp only after that. Triggers refuse any UPDATE of a record and any DELETE of a
record the server has not acknowledged; sync progress lives in its own table. Each record
carries the hash of the one before (``sync.wire.protocol.record_hash``), so the server sees a gap or
an edit. The holder hash is sealed to the server's X25519 key (``sync.wire.sealed``): the device
never stores a plain ID, a name, or even a readable holder hash.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from edge.scan.schema import Migration, SchemaError, migrate
from edge.verdict import Verdict
from sync.wire.errors import CheckpointError
from sync.wire.protocol import GENESIS, canonical_fields, record_hash
from sync.wire.sealed import HolderSealer, holder_aad
from sync.wire.sqlite import immediate_transaction

log = logging.getLogger(__name__)

COLUMNS = ("seq", "wall_time", "monotonic", "boot_id", "clock_trusted", "format", "kind", "holder_enc",
           "decision", "reason", "policy_version", "risk_version", "prev_hash", "hash")

#: version 1: the first released layout (IF NOT EXISTS: files made before versions existed adopt it)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    wall_time TEXT NOT NULL,
    monotonic REAL NOT NULL,
    boot_id TEXT NOT NULL,
    clock_trusted INTEGER NOT NULL,
    format TEXT,
    kind TEXT,
    holder_enc BLOB,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    policy_version TEXT,
    risk_version TEXT,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    acked_seq INTEGER NOT NULL DEFAULT 0,
    acked_at TEXT,
    last_success_at TEXT,
    rewinds INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO sync_state (id, acked_seq) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS records_append_only BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'scan log records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_keep_unacked BEFORE DELETE ON records
WHEN OLD.seq > (SELECT acked_seq FROM sync_state WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'refusing to delete a scan record the server has not acknowledged'); END;
"""
#: an acknowledgement goes back only as a counted rewind (``ScanLog.rewind_ack``: the server proved
#: it lost records), never by accident
ACK_FORWARD_ONLY = """
CREATE TRIGGER IF NOT EXISTS sync_ack_forward_only BEFORE UPDATE OF acked_seq ON sync_state
WHEN NEW.acked_seq < OLD.acked_seq AND NEW.rewinds = OLD.rewinds
BEGIN SELECT RAISE(ABORT, 'acknowledged sequence number cannot go backwards'); END;
"""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, SCHEMA + ACK_FORWARD_ONLY, "the first released layout"),
    Migration(2, "CREATE INDEX IF NOT EXISTS records_wall_time ON records (wall_time);",
              "retention pruning finds old records by index instead of reading the whole log"),
)


class ScanLogError(CheckpointError, RuntimeError):
    """The scan log cannot record (disk full, corrupt file) or its chain is broken."""


def _is_disk_full(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _add_ack_rewinds(db: sqlite3.Connection) -> None:
    """Upgrade a log made before acknowledgements could be rewound (a server that lost data)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(sync_state)")}
    if "rewinds" in columns:
        return
    with immediate_transaction(db):
        db.execute("ALTER TABLE sync_state ADD COLUMN rewinds INTEGER NOT NULL DEFAULT 0")
        db.execute("DROP TRIGGER IF EXISTS sync_ack_forward_only")
        db.execute(ACK_FORWARD_ONLY)


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    free_mb: float
    disk_low: bool


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _wall(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def row_to_wire(row: tuple) -> dict[str, Any]:
    """A records row as the wire dict (sync.wire.protocol.WireRecord shape, hex for bytes)."""
    rec = dict(zip(COLUMNS, row, strict=True))
    rec["clock_trusted"] = bool(rec["clock_trusted"])
    rec["holder_enc"] = rec["holder_enc"].hex() if rec["holder_enc"] is not None else None
    rec["prev_hash"] = rec["prev_hash"].hex()
    rec["hash"] = rec["hash"].hex()
    return rec


def _disk_free_bytes(path: Path) -> int:
    return shutil.disk_usage(path.parent).free


class ScanLog:
    """Append-only scan log of one device. Thread-safe; several processes may open the same file."""

    def __init__(self, path: Path | str, *, device_id: str, boot_id: str,
                 server_encryption_key: X25519PublicKey, synchronous: str = "FULL",
                 free_bytes: Callable[[Path], int] = _disk_free_bytes):
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self.path = Path(path)
        self.device_id = device_id
        self.boot_id = boot_id
        self._sealer = HolderSealer(server_encryption_key)
        self._free_bytes = free_bytes
        self._lock = threading.RLock()
        self.disk_low = False
        #: the last write (or open) failed because the disk is full; cleared by the next success
        self.disk_full = False
        self._synchronous = synchronous
        self._db: sqlite3.Connection | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except ScanLogError:
            if not self.disk_full:
                raise
            # the daemon must start anyway (lamps, status): scans show CHECK until space is back

    def _open(self) -> sqlite3.Connection:
        db = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.execute("PRAGMA busy_timeout=30000")
            self.schema_version = migrate(db, MIGRATIONS, name=f"scan log {self.path}")
            _add_ack_rewinds(db)
            self._bind_device(db)
            self._db = db
        except SchemaError as exc:
            db.close()
            raise ScanLogError(str(exc)) from None
        except sqlite3.DatabaseError as exc:
            self._db = None
            if db is not None:
                db.close()
            if _is_disk_full(exc):
                self._note_disk_full("open", exc)
                raise ScanLogError(f"cannot open the scan log {self.path}: disk full. Free space on the SD card "
                                   "(nothing committed is lost); the log reopens by itself") from exc
            raise ScanLogError(f"cannot open the scan log {self.path} ({exc}): check the file and free "
                               "disk space") from exc
        if self.disk_full:
            log.info("event=scanlog_disk_ok path=%s action=none; recording again", self.path)
        self.disk_full = False
        return db

    def _conn(self) -> sqlite3.Connection:
        """The open connection; reopens a log that could not be opened on a full disk."""
        return self._db if self._db is not None else self._open()

    def _note_disk_full(self, doing: str, exc: BaseException) -> None:
        if not self.disk_full:
            log.error("event=scanlog_disk_full path=%s during=%s error=%r action=disk full: free space on the SD "
                      "card (remove files that are not the scan log, or sync so acknowledged records can be "
                      "pruned); scans show CHECK and are not recorded until then; nothing committed is lost",
                      self.path, doing, str(exc))
        self.disk_full = True

    @property
    def available(self) -> bool:
        """False while the log could not even be opened (disk full at start-up)."""
        return self._db is not None

    def recheck_disk(self) -> bool:
        """Try again after a disk-full failure (health probe): True once the log can record again."""
        if not self.disk_full:
            return True
        try:
            if self._db is None:
                self._open()
            elif self._free_bytes(self.path) > 1_000_000:
                self.disk_full = False
                log.info("event=scanlog_disk_ok path=%s action=none; recording again", self.path)
        except ScanLogError:
            return False
        return not self.disk_full

    def _bind_device(self, db: sqlite3.Connection) -> None:
        with immediate_transaction(db):
            row = db.execute("SELECT value FROM meta WHERE key='device_id'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('device_id', ?)", (self.device_id,))
        if row is not None and row[0] != self.device_id:
            raise ScanLogError(f"scan log {self.path} belongs to device {row[0]!r}, not {self.device_id!r}")

    # -- writing ---------------------------------------------------------------------------
    def append(self, verdict: Verdict, *, wall_time: datetime, monotonic: float, clock_trusted: bool,
               policy_version: Any = None, risk_version: Any = None) -> int:
        """Durably record one decision and return its device sequence number.

        Commits (fsync with synchronous=FULL) before returning: show the lamp only afterwards.
        Raises ScanLogError when the record could not be written.
        """
        with self._lock:
            try:
                with immediate_transaction(self._conn()) as db:
                    seq = self._insert(db, verdict, _wall(wall_time), float(monotonic), bool(clock_trusted),
                                       _text(policy_version), _text(risk_version))
            except sqlite3.Error as exc:
                if _is_disk_full(exc):
                    self._note_disk_full("append", exc)
                    raise ScanLogError("scan record not written: disk full (free space on the SD card)") from exc
                log.error("event=scanlog_append_failed path=%s error=%r action=check disk space and SD card",
                          self.path, exc)
                raise ScanLogError(f"scan record not written: {exc}") from exc
            if self.disk_full:
                self.disk_full = False
                log.info("event=scanlog_disk_ok path=%s action=none; recording again", self.path)
        return seq

    def append_many(self, entries: list[tuple[Verdict, datetime, float, bool, Any, Any]]) -> list[int]:
        """Append ``(verdict, wall_time, monotonic, clock_trusted, policy_version, risk_version)``
        tuples in one transaction (imports and benchmarks; the scan path uses ``append``)."""
        with self._lock, immediate_transaction(self._conn()) as db:
            seqs = [self._insert(db, v, _wall(w), float(m), bool(t), _text(p), _text(r))
                    for v, w, m, t, p, r in entries]
        return seqs

    def _insert(self, db: sqlite3.Connection, verdict: Verdict, wall: str, mono: float, trusted: bool,
                policy_version: str | None, risk_version: str | None) -> int:
        row = db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        sealed = None
        if verdict.holder_hash is not None:
            sealed = self._sealer.seal(verdict.holder_hash, holder_aad(self.device_id, seq))
        rec = {"seq": seq, "wall_time": wall, "monotonic": mono, "boot_id": self.boot_id,
               "clock_trusted": trusted, "format": _text(verdict.format), "kind": _text(verdict.kind),
               "holder_enc": sealed.hex() if sealed is not None else None,
               "decision": _text(verdict.decision), "reason": _text(verdict.reason),
               "policy_version": policy_version, "risk_version": risk_version}
        digest = record_hash(prev, canonical_fields(rec))
        db.execute(
            f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            (seq, wall, mono, self.boot_id, int(trusted), rec["format"], rec["kind"], sealed,
             rec["decision"], rec["reason"], policy_version, risk_version, prev, digest))
        return seq

    # -- reading ---------------------------------------------------------------------------
    def unsent(self, limit: int = 500) -> list[dict[str, Any]]:
        """The oldest records the server has not acknowledged, as wire dicts, in seq order."""
        with self._lock:
            rows = self._conn().execute(
                f"SELECT {', '.join(COLUMNS)} FROM records WHERE seq > "
                "(SELECT acked_seq FROM sync_state WHERE id = 1) ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [row_to_wire(r) for r in rows]

    def records(self, start: int = 1, limit: int = 1_000_000) -> list[dict[str, Any]]:
        """Records from ``start`` on, as wire dicts (audits and tests)."""
        with self._lock:
            rows = self._conn().execute(f"SELECT {', '.join(COLUMNS)} FROM records WHERE seq >= ? "
                                    "ORDER BY seq LIMIT ?", (start, limit)).fetchall()
        return [row_to_wire(r) for r in rows]

    def _scalar(self, sql: str) -> Any:
        with self._lock:
            return self._conn().execute(sql).fetchone()[0]

    @property
    def head_seq(self) -> int:
        """Highest sequence number written (0 for an empty log)."""
        return self._scalar("SELECT COALESCE(MAX(seq), 0) FROM records")

    @property
    def acked_seq(self) -> int:
        return self._scalar("SELECT acked_seq FROM sync_state WHERE id = 1")

    @property
    def oldest_seq(self) -> int:
        """Lowest sequence number still on the card (0 for an empty log)."""
        return self._scalar("SELECT COALESCE(MIN(seq), 0) FROM records")

    def hash_at(self, seq: int) -> str | None:
        """Hex hash of the record ``seq``, or None if this log does not hold it (pruned, not written)."""
        with self._lock:
            row = self._conn().execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
        return row[0].hex() if row else None

    def count(self) -> int:
        return self._scalar("SELECT COUNT(*) FROM records")

    def pending(self) -> int:
        """How many records wait for the server's acknowledgement."""
        return self._scalar("SELECT COUNT(*) FROM records WHERE seq > (SELECT acked_seq FROM sync_state)")

    def decision_counts(self, since: datetime) -> dict[str, int]:
        """``{decision: count}`` of records stamped at or after ``since`` (the staff screen's day)."""
        with self._lock:
            rows = self._db.execute("SELECT decision, COUNT(*) FROM records WHERE wall_time >= ? GROUP BY decision",
                                    (_wall(since),)).fetchall()
        return {decision: count for decision, count in rows}

    def last_success_at(self) -> datetime | None:
        value = self._scalar("SELECT last_success_at FROM sync_state WHERE id = 1")
        return datetime.fromisoformat(value) if value else None

    # -- sync state ------------------------------------------------------------------------
    def acknowledge(self, seq: int, *, at: datetime | None = None) -> int:
        """Record the server's answer "I hold everything up to ``seq``"; return the new acked seq.

        Only moves forward and never past what this log has written.
        """
        at_text = _wall(at or datetime.now(UTC))
        with self._lock, immediate_transaction(self._conn()) as db:
            head, acked = db.execute(
                "SELECT COALESCE((SELECT MAX(seq) FROM records), 0), acked_seq FROM sync_state").fetchone()
            if seq > head:
                log.warning("event=scanlog_ack_beyond_head acked=%d head=%d action=server holds records "
                            "this log does not: check for a restored or swapped SD card", seq, head)
            new = max(acked, min(seq, head))
            db.execute("UPDATE sync_state SET acked_seq = ?, acked_at = ?, last_success_at = ?",
                       (new, at_text, at_text))
        return new

    def rewind_ack(self, seq: int) -> int:
        """The server proved it holds only up to ``seq`` (it lost data): records after it are
        unacknowledged again, so they are resent and never pruned before the server holds them."""
        with self._lock, immediate_transaction(self._conn()) as db:
            acked = db.execute("SELECT acked_seq FROM sync_state").fetchone()[0]
            if seq >= acked:
                return acked
            db.execute("UPDATE sync_state SET acked_seq = ?, rewinds = rewinds + 1", (max(seq, 0),))
        log.warning("event=scanlog_ack_rewound from_seq=%d to_seq=%d action=none; the server lost records "
                    "(restored or emptied database): resending what this card still holds", acked, seq)
        return max(seq, 0)

    def mark_success(self, at: datetime | None = None) -> None:
        """Note a completed sync cycle (the daemon's "server unreachable" check reads it)."""
        with self._lock:
            self._conn().execute("UPDATE sync_state SET last_success_at = ?", (_wall(at or datetime.now(UTC)),))

    # -- integrity and retention -------------------------------------------------------------
    def verify_chain(self) -> int:
        """Recompute every hash and link still on disk; return the record count or raise ScanLogError."""
        prev: bytes | None = None
        last_seq: int | None = None
        n = 0
        with self._lock:
            cursor = self._conn().execute(f"SELECT {', '.join(COLUMNS)} FROM records ORDER BY seq")
            for row in cursor:
                rec = row_to_wire(row)
                if last_seq is not None and rec["seq"] != last_seq + 1:
                    raise ScanLogError(f"gap in scan log after seq {last_seq} (next is {rec['seq']})")
                if prev is not None and bytes.fromhex(rec["prev_hash"]) != prev:
                    raise ScanLogError(f"hash chain broken at seq {rec['seq']}")
                digest = record_hash(bytes.fromhex(rec["prev_hash"]), canonical_fields(rec))
                if digest.hex() != rec["hash"]:
                    raise ScanLogError(f"record {rec['seq']} was altered (hash mismatch)")
                prev, last_seq, n = digest, rec["seq"], n + 1
        return n

    def prune(self, *, retention_days: int, min_free_mb: int, now: datetime | None = None,
              chunk: int = 5000) -> PruneResult:
        """Delete acknowledged records, always the oldest by sequence first, never from the middle:
        those before the first record still within ``retention_days`` (a wall clock that went back
        and forth cannot punch holes), then more of the oldest while free space is below
        ``min_free_mb``. Unacknowledged records are never deleted: if space is still short,
        ``disk_low`` is set and logged.

        The newest record is always kept (it anchors the hash chain).
        """
        cutoff = _wall((now or datetime.now(UTC)) - timedelta(days=retention_days))
        deleted = 0
        with self._lock:
            db = self._conn()
            first_kept = db.execute("SELECT seq FROM records WHERE wall_time >= ? ORDER BY seq LIMIT 1",
                                    (cutoff,)).fetchone()
            keep_from = first_kept[0] if first_kept else None
            while True:
                n = self._delete_oldest(chunk, before=keep_from)
                deleted += n
                if n < chunk:
                    break
            while self._free_mb() < min_free_mb:
                n = self._delete_oldest(chunk)
                if n == 0:
                    break
                deleted += n
            free = self._free_mb()
            low = free < min_free_mb
        if low and not self.disk_low:
            log.error("event=scanlog_disk_low free_mb=%.1f min_free_mb=%d unacked=%d action=sync this device "
                      "or free space; unacknowledged records are kept, never deleted",
                      free, min_free_mb, self.pending())
        elif not low and self.disk_low:
            log.info("event=scanlog_disk_ok free_mb=%.1f", free)
        self.disk_low = low
        if deleted:
            log.info("event=scanlog_pruned deleted=%d free_mb=%.1f", deleted, free)
        return PruneResult(deleted=deleted, free_mb=free, disk_low=low)

    def _delete_oldest(self, limit: int, *, before: int | None = None) -> int:
        """Delete up to ``limit`` of the oldest acknowledged records (only seqs below ``before``)."""
        with immediate_transaction(self._conn()) as db:
            cur = db.execute(
                "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE seq <= "
                "(SELECT acked_seq FROM sync_state) AND seq < (SELECT MAX(seq) FROM records) AND seq < ? "
                "ORDER BY seq LIMIT ?)", (before if before is not None else 2**63 - 1, limit))
        if cur.rowcount:
            db.execute("PRAGMA incremental_vacuum")
        return cur.rowcount

    def _free_mb(self) -> float:
        db = self._conn()
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        freelist = db.execute("PRAGMA freelist_count").fetchone()[0]
        return (self._free_bytes(self.path) + page_size * freelist) / 1e6

    def health(self) -> dict[str, Any]:
        """Flags and counters for the daemon's status and light."""
        last = self.last_success_at()
        return {"disk_low": self.disk_low, "head_seq": self.head_seq, "acked_seq": self.acked_seq,
                "pending": self.pending(), "last_sync_success": last.isoformat() if last else None}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()

    def __enter__(self) -> ScanLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
