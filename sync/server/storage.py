"""Server storage interface and the row shape both back-ends (SQLite, PostgreSQL) share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sync.server.fleet.sharing import SharingQueries
from sync.server.fleet.store import FleetQueries
from sync.server.security_store import SecurityQueries
from sync.server.trace import TraceQueries
from sync.wire.errors import CheckpointError

#: columns of the server's ``records`` table, in row-tuple order
RECORD_COLUMNS = ("device_id", "epoch", "seq", "wall_time", "monotonic", "boot_id", "clock_trusted", "format", "kind",
                  "holder_hash", "holder_enc", "decision", "reason", "policy_version", "risk_version",
                  "prev_hash", "hash")


_T = TypeVar("_T")


class StorageError(CheckpointError, RuntimeError):
    """The server database is unreachable or refused a write."""


class RecordConflict(StorageError):
    """Another writer stored a different record under a seq of this batch: the batch is rolled back and
    ingest checks it again against that record (which forks the chain there)."""


@dataclass(frozen=True)
class LostRange:
    """Records a device reported pruned before the server held them: gone for good."""

    epoch: int
    first_seq: int
    last_seq: int
    missing: int
    noted_at: str


@dataclass(frozen=True)
class ChainFork:
    """The device's log went backwards (restored card): from ``epoch`` on, its records after
    ``base_seq`` are filed apart from the ones the server held before."""

    epoch: int
    base_seq: int
    started_at: str
    resolved_at: str | None = None
    resolved_by: str | None = None


@dataclass(frozen=True)
class DeviceSummary:
    device_id: str
    enrolled_at: str
    last_seen: str | None
    acked_seq: int
    records: int
    held_beyond_gap: int
    verdicts: dict[str, int]
    epoch: int = 0
    lost_for_good: int = 0
    lost_ranges: tuple[LostRange, ...] = ()
    forks: tuple[ChainFork, ...] = ()

    @property
    def open_forks(self) -> int:
        return sum(1 for f in self.forks if f.resolved_at is None)


@dataclass(frozen=True)
class DeviceState:
    """Where a device's current chain stands on the server."""

    epoch: int
    acked_seq: int
    #: the key that may sign the device's requests now (None: revoked or not enrolled); read by
    #: ``chain_view`` in the same query, so every push is checked against the database
    key: bytes | None = None


class StaleEpoch(StorageError):
    """Another request forked the device's chain while this batch was being checked: retry it."""


class SignerRevoked(StorageError):
    """The key that signed the batch stopped being the device's (revoked, or another key enrolled)
    before the batch's transaction could commit: nothing of it is stored."""


@dataclass(frozen=True)
class OpsStats:
    """Fleet figures for monitoring: from the devices table, and a key range per device for the backlog."""

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

    def links(self, device_id: str, lo: int, hi: int) -> dict[int, tuple[bytes, bytes]]:
        """``seq -> (prev_hash, hash)`` of the device's current chain (across its epochs), ``lo <= seq <= hi``."""

    def device_state(self, device_id: str) -> DeviceState: ...

    def chain_view(self, device_id: str, lo: int, hi: int) -> tuple[DeviceState, dict[int, tuple[bytes, bytes]]]:
        """``device_state`` (with the device's current key) and ``links`` read together (what
        ingest reads before each batch)."""

    def insert(self, device_id: str, rows: Iterable[tuple], seen_at: str, *, span: tuple[int, int],
               epoch: int = 0, pruned_through: int | None = None,
               signer_key: bytes | None = None) -> tuple[int, int]:
        """Store rows (RECORD_COLUMNS order) once each, in one transaction; return (newly stored, acked_seq).

        ``rows`` may be a generator that checks records as it goes: it is read to the end inside the
        transaction, and an exception from it rolls everything back and propagates. ``span`` is the
        (first, last) seq of the whole batch: afterwards the server holds every seq in it.
        ``epoch`` is the device's chain epoch the rows belong to (StaleEpoch if it is no longer the
        current one). ``pruned_through``: the device no longer has records up to it; what the
        server lacks of them is noted as lost for good and acked_seq moves past them.
        ``signer_key``: the key that signed the batch; SignerRevoked unless it is still the device's
        current key when the transaction commits (a revocation committed before that refuses it).
        """

    def start_epoch(self, device_id: str, *, after: int, base_seq: int) -> int:
        """Fork the device's chain after ``base_seq`` unless epoch ``after`` is no longer current;
        return the current epoch."""

    def resolve_forks(self, device_id: str, *, by: str) -> int:
        """Mark the device's open forks reviewed by an operator; return how many."""

    def acked_seq(self, device_id: str) -> int: ...

    def fleet(self) -> list[DeviceSummary]: ...

    def records(self, device_id: str, *, epoch: int | None = None) -> list[dict[str, Any]]:
        """Every stored record of a device in (epoch, seq) order (audits and tests)."""

    def chain_records(self, device_id: str) -> list[dict[str, Any]]: ...

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


#: the key that may sign a device's requests now (NULL when revoked), of ``devices d``
_CURRENT_KEY = ("CASE WHEN EXISTS (SELECT 1 FROM revocations r WHERE r.device_id = d.device_id) THEN NULL "
                "ELSE d.public_key END")

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


SEQS_AFTER = "SELECT seq FROM records WHERE device_id=? AND epoch=? AND seq > ? ORDER BY seq LIMIT ?"
#: what a device's chain head becomes after a write that could not tell it from the batch alone: the
#: highest seq held in the epoch, and the hash of the record at the new acked_seq
_HEAD_AFTER = ("SELECT (SELECT MAX(seq) FROM records WHERE device_id=? AND epoch=?), "
               "(SELECT hash FROM records WHERE device_id=? AND epoch=? AND seq=?)")


@dataclass(frozen=True)
class ChainHead:
    """What the ``devices`` row says about the end of a device's current chain (schema step 8):
    ``top_seq``, a bound no record of the epoch is held beyond, and ``acked_hash``, the hash of
    the record at acked_seq. None for either: not known (a fork, a database from before step 8),
    so the records are read instead. A batch that starts right after acked_seq while nothing is
    held beyond it (``follows``) is the usual push: no held record can be in its span, which
    spares the reads and checks the general case needs."""

    acked_seq: int
    top_seq: int | None
    acked_hash: bytes | None

    def follows(self, lo: int) -> bool:
        """True if a batch starting at seq ``lo`` extends the chain with nothing held in or after it."""
        return self.top_seq is not None and self.top_seq <= self.acked_seq and lo == self.acked_seq + 1

    def links(self) -> dict[int, tuple[bytes, bytes]] | None:
        """The held links around a batch that ``follows`` (only the record at acked_seq), or None if
        its hash is not known."""
        if self.acked_seq == 0:
            return {}
        return {self.acked_seq: (b"", self.acked_hash)} if self.acked_hash is not None else None


def head_after_write(run: Callable[[str, tuple], list[tuple]], device_id: str, epoch: int, acked: int,
                     span: tuple[int, int], taken: list[tuple], fast: bool) -> tuple[int, bytes | None]:
    """``(top_seq, acked_hash)`` to store after a write: from the batch when it extended the chain
    (``fast``: every row stored, acked_seq is its last), else read from the records."""
    if fast:
        return span[1], taken[-1][16]
    top, digest = run(_HEAD_AFTER, (device_id, epoch, device_id, epoch, acked))[0]
    return max(int(top or 0), acked), bytes(digest) if digest is not None else None


#: the device row's update at the end of a write (acked, last seen, stored count, chain head)
DEVICE_AFTER_WRITE = ("UPDATE devices SET acked_seq=?, last_seen=?, records=records+?, top_seq=?, acked_hash=? "
                      "WHERE device_id=?")
#: ... only while ``public_key`` (one more parameter) is the device's current key: the last statement
#: of a write, so it sees every revocation or new key committed before it (one row updated, or none)
DEVICE_AFTER_SIGNED_WRITE = (DEVICE_AFTER_WRITE + " AND public_key=? AND NOT EXISTS (SELECT 1 FROM revocations r "
                             "WHERE r.device_id = devices.device_id)")


def device_after_write(params: tuple, signer_key: bytes | None) -> tuple[str, tuple]:
    """The device row's update at the end of a write (``params`` of DEVICE_AFTER_WRITE), checking the
    signer's key when there is one: the write must then update exactly one row (else SignerRevoked)."""
    if signer_key is None:
        return DEVICE_AFTER_WRITE, params
    return DEVICE_AFTER_SIGNED_WRITE, (*params, signer_key)


def check_signer_updated(device_id: str, signer_key: bytes | None, updated: int) -> None:
    if signer_key is not None and updated != 1:
        raise SignerRevoked(f"{device_id} was revoked or enrolled another key while its batch was stored")
#: what a device's chain needs beside its records: epochs after a fork, ranges gone for good
CHAIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS epochs (
    device_id TEXT NOT NULL, epoch INTEGER NOT NULL, base_seq BIGINT NOT NULL, started_at TEXT NOT NULL,
    resolved_at TEXT, resolved_by TEXT, PRIMARY KEY (device_id, epoch));
CREATE TABLE IF NOT EXISTS lost_records (
    device_id TEXT NOT NULL, epoch INTEGER NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL,
    missing BIGINT NOT NULL, noted_at TEXT NOT NULL, PRIMARY KEY (device_id, epoch, first_seq));
"""


def chain_slices(epochs: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int, int]]:
    """``(epoch, first, last)`` pieces of seqs ``lo..hi`` along a device's current chain.

    ``epochs`` are ``(epoch, base_seq)`` newest first (epoch 0 has base 0): each epoch holds the
    seqs after its base up to the next epoch's base; the ones before are its parent's.
    """
    out = []
    upper = hi
    for epoch, base in epochs:
        first = max(lo, base + 1)
        if first <= upper:
            out.append((epoch, first, upper))
        upper = min(upper, base)
        if upper < lo:
            break
    return out


def note_lost(run: Callable[[str, tuple], list[tuple]], device_id: str, epoch: int, acked: int,
              pruned_through: int, chain: dict[int, tuple[bytes, bytes]], noted_at: str) -> int:
    """Record seqs ``acked+1..pruned_through`` the device pruned and the server lacks; the new acked."""
    if pruned_through <= acked:
        return acked
    missing = pruned_through - acked - sum(1 for s in chain if acked < s <= pruned_through)
    if missing:
        run("INSERT INTO lost_records (device_id, epoch, first_seq, last_seq, missing, noted_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (device_id, epoch, acked + 1, pruned_through, missing, noted_at))
    return pruned_through


class SQLStorage(SecurityQueries, FleetQueries, TraceQueries, SharingQueries):
    """Shared queries of the SQL back-ends; subclasses provide ``_all``/``_exec`` and ``insert``.

    SQL is written with ``?`` placeholders; a back-end with another style converts in ``_all``.
    """

    _lock: threading.Lock
    #: how many threads can run queries at once (the server sizes its database executor with it)
    concurrency: int = 1

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

    def _epochs(self, device_id: str, run: Callable[[str, tuple], list[tuple]] | None = None) -> list[tuple[int, int]]:
        rows = (run or self._all)("SELECT epoch, base_seq FROM epochs WHERE device_id=? ORDER BY epoch DESC",
                                  (device_id,))
        return [*((int(e), int(b)) for e, b in rows), (0, 0)]

    def _links(self, run: Callable[[str, tuple], list[tuple]], device_id: str, lo: int,
               hi: int, epochs: list[tuple[int, int]] | None = None) -> dict[int, tuple[bytes, bytes]]:
        out: dict[int, tuple[bytes, bytes]] = {}
        for epoch, first, last in chain_slices(epochs or self._epochs(device_id, run), max(lo, 1), hi):
            for seq, prev, digest in run("SELECT seq, prev_hash, hash FROM records WHERE device_id=? AND epoch=? "
                                         "AND seq BETWEEN ? AND ?", (device_id, epoch, first, last)):
                out[int(seq)] = (bytes(prev), bytes(digest))
        return out

    def links(self, device_id: str, lo: int, hi: int) -> dict[int, tuple[bytes, bytes]]:
        with self._lock:
            return self._links(self._all, device_id, lo, hi)

    def device_state(self, device_id: str) -> DeviceState:
        with self._lock:
            rows = self._all(f"SELECT d.epoch, d.acked_seq, {_CURRENT_KEY} FROM devices d WHERE d.device_id=?",
                             (device_id,))
        if not rows:
            return DeviceState(0, 0)
        epoch, acked, key = rows[0]
        return DeviceState(int(epoch), int(acked), bytes(key) if key is not None else None)

    def chain_view(self, device_id: str, lo: int, hi: int) -> tuple[DeviceState, dict[int, tuple[bytes, bytes]]]:
        # the device row and its epochs in one query: a push reads them once per batch; the records
        # only if the batch does not simply extend the chain (``ChainHead.follows``)
        with self._lock:
            rows = self._all(f"SELECT d.epoch, d.acked_seq, d.top_seq, d.acked_hash, {_CURRENT_KEY}, e.epoch, "
                             "e.base_seq FROM devices d LEFT JOIN epochs e ON e.device_id = d.device_id "
                             "WHERE d.device_id=? ORDER BY e.epoch DESC", (device_id,))
            if not rows:
                return DeviceState(0, 0), self._links(self._all, device_id, lo, hi, [(0, 0)])
            epoch, acked, top, digest, key = rows[0][:5]
            state = DeviceState(int(epoch), int(acked), bytes(key) if key is not None else None)
            head = ChainHead(state.acked_seq, top, bytes(digest) if digest is not None else None)
            known = head.links() if head.follows(lo + 1) else None
            if known is not None:
                return state, known
            epochs = [*((int(e), int(b)) for *_head, e, b in rows if e is not None), (0, 0)]
            return state, self._links(self._all, device_id, lo, hi, epochs)

    def acked_seq(self, device_id: str) -> int:
        return self.device_state(device_id).acked_seq

    def start_epoch(self, device_id: str, *, after: int, base_seq: int) -> int:
        with self._lock:
            return self._run_in_transaction(lambda run: self._start_epoch(run, device_id, after, base_seq))

    @staticmethod
    def _start_epoch(run: Callable[[str, tuple], list[tuple]], device_id: str, after: int, base_seq: int) -> int:
        current, acked = run("SELECT epoch, acked_seq FROM devices WHERE device_id=?", (device_id,))[0]
        if int(current) != after:
            return int(current)
        # every seq up to an epoch's base is held in the epochs before it: a fork never claims more
        # than the contiguous head (ingest forks there when records are missing before the fork)
        base_seq = min(base_seq, int(acked))
        new = int(current) + 1
        run("INSERT INTO epochs (device_id, epoch, base_seq, started_at) VALUES (?, ?, ?, ?)",
            (device_id, new, base_seq, datetime.now(UTC).isoformat(timespec="seconds")))
        run("UPDATE devices SET epoch=?, acked_seq=?, top_seq=NULL, acked_hash=NULL WHERE device_id=?",
            (new, base_seq, device_id))
        return new

    def resolve_forks(self, device_id: str, *, by: str) -> int:
        with self._lock:
            open_forks = self._all("SELECT COUNT(*) FROM epochs WHERE device_id=? AND resolved_at IS NULL",
                                   (device_id,))[0][0]
            self._exec("UPDATE epochs SET resolved_at=?, resolved_by=? WHERE device_id=? AND resolved_at IS NULL",
                       (datetime.now(UTC).isoformat(timespec="seconds"), by, device_id))
        return int(open_forks)

    def _run_in_transaction(self, work: Callable[[Callable[[str, tuple], list[tuple]]], _T]) -> _T:
        raise NotImplementedError

    def chain_records(self, device_id: str) -> list[dict[str, Any]]:
        """The device's current chain in seq order: its epochs' records, each from its fork on."""
        with self._lock:
            epochs = self._epochs(device_id)
        out: list[dict[str, Any]] = []
        for epoch, first, last in reversed(chain_slices(epochs, 1, 2**63 - 1)):
            out.extend(r for r in self.records(device_id, epoch=epoch) if first <= r["seq"] <= last)
        return out

    def fleet(self) -> list[DeviceSummary]:
        with self._lock:
            devices = self._all("SELECT device_id, enrolled_at, last_seen, acked_seq, records, epoch FROM devices "
                                "ORDER BY device_id")
            out = []
            for device_id, enrolled, seen, acked, n, epoch in devices:
                verdicts = dict(self._all("SELECT decision, COUNT(*) FROM records WHERE device_id=? "
                                          "GROUP BY decision", (device_id,)))
                beyond = self._all("SELECT COUNT(*) FROM records WHERE device_id=? AND epoch=? AND seq > ?",
                                   (device_id, epoch, acked))[0][0]
                lost = tuple(LostRange(*row) for row in self._all(
                    "SELECT epoch, first_seq, last_seq, missing, noted_at FROM lost_records WHERE device_id=? "
                    "ORDER BY epoch, first_seq", (device_id,)))
                forks = tuple(ChainFork(*row) for row in self._all(
                    "SELECT epoch, base_seq, started_at, resolved_at, resolved_by FROM epochs WHERE device_id=? "
                    "ORDER BY epoch", (device_id,)))
                out.append(DeviceSummary(device_id, enrolled, seen, acked, n, beyond, verdicts, epoch=epoch,
                                         lost_for_good=sum(r.missing for r in lost), lost_ranges=lost, forks=forks))
        return out

    def records(self, device_id: str, *, epoch: int | None = None) -> list[dict[str, Any]]:
        """Every stored record of a device (of one epoch, if given) in (epoch, seq) order."""
        where, params = ("device_id=?", (device_id,)) if epoch is None else \
            ("device_id=? AND epoch=?", (device_id, epoch))
        with self._lock:
            rows = self._all(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE {where} ORDER BY epoch, seq",
                             params)
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
        # held beyond a gap: records of each device's current epoch after its acked_seq (a primary-key
        # range per device, empty unless a gap is open); not records - acked_seq, which counts the
        # records of earlier epochs after a fork and goes wrong once retention deletes
        with self._lock:
            row = self._all(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN last_seen >= ? THEN 1 ELSE 0 END), 0), "
                "COALESCE(SUM(CASE WHEN last_seen IS NULL OR last_seen < ? THEN 1 ELSE 0 END), 0), "
                "(SELECT COUNT(*) FROM devices d JOIN records r ON r.device_id = d.device_id "
                "AND r.epoch = d.epoch AND r.seq > d.acked_seq), "
                "COALESCE(SUM(records), 0) FROM devices", (online_since, silent_before))[0]
        return OpsStats(*(int(v) for v in row))

    def count_records(self) -> int:
        """Rows in ``records``, counted (audits: the per-device ``records`` counters must agree)."""
        with self._lock:
            return int(self._all("SELECT COUNT(*) FROM records")[0][0])

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
