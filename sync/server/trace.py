"""F1 tracing from the checkpoint logs: where was this holder scanned, and who was there with them.

A tracer names a holder by citizen id (keyed here with the server's identifier key: no id in clear
is stored or logged) or by an EU DCC certificate id (UCI), and a period. The holder's visits are
their scan records; the candidate contacts of one visit are the other holders scanned at the same
checkpoint (every device of it, from the registry) within ± ``window`` of it. Contacts are ranked by
how close in time they came (then by how often), with counts per checkpoint, so a tracer can pick
whom to publish as F1 instead of locking down a whole street.

Indexes that make it fast (schema step 7, ``covering_trace_indexes``): ``records (holder_hash,
wall_time)`` for the visits and ``records (device_id, wall_time)`` for the windows, each carrying the
other columns its query reads, so both are index-only scans: a window reads a few index pages, not
one heap page per scan in it. On PostgreSQL an index-only scan skips the heap only for pages the
visibility map marks all-visible; for an insert-only table like ``records`` autovacuum keeps it so
(since PostgreSQL 13 inserts alone trigger it), and a bulk load should ``VACUUM (ANALYZE)`` at its end.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np

from sync.server.publish.risk import RiskPublisher
from sync.server.registry import Registry, device_checkpoint
from sync.wire.errors import CheckpointError
from sync.wire.identifiers import IdentifierKey, certificate_hash, holder_hash, keyed_certificate
from sync.wire.protocol import wall_instant
from sync.wire.risk.records import encode_until, lookup_many
from sync.wire.risk.types import RiskStatus

#: schema step 5's trace indexes, as released (step 7 replaces them)
TRACE_INDEXES = """
CREATE INDEX IF NOT EXISTS records_by_holder ON records (holder_hash, wall_time);
CREATE INDEX IF NOT EXISTS records_by_device_time ON records (device_id, wall_time);
"""
#: step 7: the same keys covering what ``visits_sql`` and ``near_sql`` read (and, on partitioned
#: PostgreSQL, the ``scanned_at`` bounds they filter on); SQLite has no INCLUDE: the columns go last
#: in the key. The device/time one also serves the fleet view's recent decisions of a device.
COVERING_TRACE_INDEXES: dict[str, tuple[tuple[str, str], ...]] = {
    "sqlite": (("records_by_holder_cover", "(holder_hash, wall_time, device_id, decision)"),
               ("records_by_device_time_cover", "(device_id, wall_time, holder_hash)")),
    "postgresql": (("records_by_holder_cover", "(holder_hash, wall_time) INCLUDE (device_id, decision, scanned_at)"),
                   ("records_by_device_time_cover", "(device_id, wall_time) INCLUDE (holder_hash, scanned_at)")),
}


def covering_trace_indexes(engine: str) -> str:
    """The CREATE INDEX statements of the trace indexes of ``engine`` ("sqlite" or "postgresql")."""
    return "".join(f"CREATE INDEX IF NOT EXISTS {name} ON records {columns};\n"
                   for name, columns in COVERING_TRACE_INDEXES[engine])


def covering_trace_step(engine: str) -> str:
    """Schema step 7: drop step 5's trace indexes first (so the disk they take is not needed twice),
    then build the covering ones."""
    drops = "".join(f"DROP INDEX IF EXISTS {name};\n" for name in ("records_by_holder", "records_by_device_time"))
    return drops + covering_trace_indexes(engine)

#: a trace never returns more than this many visits or contacts (a tracer narrows the period instead)
MAX_VISITS = 2_000
MAX_CONTACTS = 5_000
MAX_PERIOD = timedelta(days=62)


#: what bounds the scan time of a partitioned back-end adds (PostgreSQL: the partition key, so a
#: trace reads only the months it asks for); it equals the parsed wall time, so the rows are the same
PARTITION_BOUNDS = " AND scanned_at >= ?::timestamptz AND scanned_at <= ?::timestamptz"


def visits_sql(partitioned: bool) -> str:
    """A holder's scans in [since, until) (served by ``records_by_holder_cover``, index only); ``?`` placeholders."""
    return ("SELECT device_id, wall_time, decision FROM records WHERE holder_hash = ? AND wall_time >= ? "
            f"AND wall_time < ?{PARTITION_BOUNDS if partitioned else ''} ORDER BY wall_time LIMIT ?")


def near_sql(devices: int, partitioned: bool) -> str:
    """The scans with a holder at ``devices`` devices in [start, end] (served by
    ``records_by_device_time_cover``, index only)."""
    marks = ", ".join("?" * devices)
    return (f"SELECT holder_hash, device_id, wall_time FROM records WHERE device_id IN ({marks}) "
            f"AND wall_time >= ? AND wall_time <= ?{PARTITION_BOUNDS if partitioned else ''} "
            "AND holder_hash IS NOT NULL LIMIT ?")


class TraceError(CheckpointError, ValueError):
    """A trace query that cannot be answered as asked (no holder, period too long, no key)."""


@dataclass(frozen=True)
class Visit:
    device_id: str
    checkpoint_id: str
    at: datetime
    decision: str


@dataclass
class Contact:
    """One other holder seen near the traced one: how close in time, how often, where."""

    holder: bytes
    closest_s: float
    times: int = 0
    checkpoints: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TraceResult:
    holder: bytes
    since: datetime
    until: datetime
    window: timedelta
    visits: list[Visit]
    contacts: list[Contact]

    @property
    def per_checkpoint(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for v in self.visits:
            counts[v.checkpoint_id] += 1
        return dict(counts)


def traced_holder(*, citizen_id: str | None, uci: str | None, key: IdentifierKey | None) -> bytes:
    """The 16-byte value the logs hold for the named person or certificate."""
    if bool(citizen_id) == bool(uci):
        raise TraceError("name exactly one of a citizen id and a DCC certificate id (UCI)")
    if key is None:
        raise TraceError("this server has no identifier key: it cannot look holders up")
    if citizen_id:
        return holder_hash(citizen_id, key)
    return keyed_certificate(certificate_hash(uci or ""), key)  # what ingest stores for a DCC holder


class TraceQueries:
    """The record reads tracing needs; a mixin of ``storage.SQLStorage`` (``?`` placeholders)."""

    _lock: threading.Lock
    #: records are partitioned by scan time (PostgreSQL): the queries bound it too
    partitioned_records = False

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def visits_of(self, holder: bytes, since: str, until: str, limit: int) -> list[tuple[str, str, str]]:
        """(device id, wall time, decision) of a holder's scans in [since, until), oldest first."""
        bounds = (since, until) if self.partitioned_records else ()
        with self._lock:
            return [tuple(r) for r in self._all(visits_sql(self.partitioned_records),
                                                (holder, since, until, *bounds, limit))]

    def dcc_holders(self, holders: list[bytes]) -> set[bytes]:
        """The holders among these whose scans were EU DCCs: the server keeps keyed certificate
        values for them, which no device can look up (a device hashes the UCI, it has no key)."""
        found: set[bytes] = set()
        for start in range(0, len(holders), 500):
            part = holders[start:start + 500]
            with self._lock:
                rows = self._all(f"SELECT DISTINCT holder_hash FROM records WHERE holder_hash IN "
                                 f"({', '.join('?' * len(part))}) AND format = 'HC1'", tuple(part))
            found.update(bytes(r[0]) for r in rows)
        return found

    def holders_near(self, device_ids: list[str], start: str, end: str, limit: int) -> list[tuple[bytes, str, str]]:
        """(holder, device id, wall time) of every scan with a holder at these devices in [start, end]."""
        bounds = (start, end) if self.partitioned_records else ()
        with self._lock:
            return [(bytes(h), d, w) for h, d, w in self._all(near_sql(len(device_ids), self.partitioned_records),
                                                              (*device_ids, start, end, *bounds, limit))]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def trace(store: TraceQueries, registry: Registry, holder: bytes, since: datetime, until: datetime,
          window: timedelta) -> TraceResult:
    """The holder's visits in [since, until) and the other holders within ± window at the same checkpoint."""
    if until <= since or until - since > MAX_PERIOD:
        raise TraceError(f"the period must be positive and at most {MAX_PERIOD.days} days")
    if not timedelta(0) < window <= timedelta(hours=12):
        raise TraceError("the window must be between 1 minute and 12 hours")
    visits = []
    for device_id, wall, decision in store.visits_of(holder, _iso(since), _iso(until), MAX_VISITS):
        at = wall_instant(wall)
        if at is None:
            continue
        checkpoint = registry.checkpoint_of(device_id)
        visits.append(Visit(device_id, checkpoint.checkpoint_id if checkpoint else device_checkpoint(device_id),
                            at, decision))
    contacts: dict[bytes, Contact] = {}
    for visit in visits:
        checkpoint = registry.checkpoints.get(visit.checkpoint_id)
        devices = checkpoint.device_ids if checkpoint else [visit.device_id]
        if visit.device_id not in devices:
            devices = [*devices, visit.device_id]
        near = store.holders_near(devices, _iso(visit.at - window), _iso(visit.at + window), MAX_CONTACTS)
        for other, _device, wall in near:
            if other == holder:
                continue
            other_at = wall_instant(wall)
            if other_at is None:
                continue
            gap = abs((other_at - visit.at).total_seconds())
            contact = contacts.setdefault(other, Contact(other, gap))
            contact.closest_s = min(contact.closest_s, gap)
            contact.times += 1
            contact.checkpoints[visit.checkpoint_id] = contact.checkpoints.get(visit.checkpoint_id, 0) + 1
    ranked = sorted(contacts.values(), key=lambda c: (c.closest_s, -c.times, c.holder))[:MAX_CONTACTS]
    return TraceResult(holder, since, until, window, visits, ranked)


def trace_json(result: TraceResult) -> dict:
    """The answer a tracer exports (keyed values only, times in UTC ISO-8601)."""
    return {
        "holder": result.holder.hex(), "since": result.since.isoformat(), "until": result.until.isoformat(),
        "window_min": int(result.window.total_seconds() // 60),
        "visits": [{"checkpoint_id": v.checkpoint_id, "device_id": v.device_id, "at": v.at.isoformat(),
                    "decision": v.decision} for v in result.visits],
        "per_checkpoint": result.per_checkpoint,
        "contacts": [{"holder": c.holder.hex(), "closest_min": round(c.closest_s / 60, 1), "times": c.times,
                      "checkpoints": c.checkpoints} for c in result.contacts],
    }


#: columns of the CSV export: one row per visit, then one per candidate contact
CSV_COLUMNS = ("row", "holder", "checkpoint_id", "device_id", "at", "decision", "closest_min", "times", "checkpoints")


def trace_csv(result: TraceResult) -> str:
    """The tracer's CSV export: the traced holder's visits, then the contacts (ranked), keyed values only.

    ``checkpoints`` of a contact is ``ID:count`` pairs joined by spaces (checkpoint ids have no spaces).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    holder = result.holder.hex()
    for v in result.visits:
        writer.writerow(("visit", holder, v.checkpoint_id, v.device_id, v.at.isoformat(), v.decision, "", "", ""))
    for c in result.contacts:
        writer.writerow(("contact", c.holder.hex(), "", "", "", "", round(c.closest_s / 60, 1), c.times,
                         " ".join(f"{k}:{n}" for k, n in c.checkpoints.items())))
    return out.getvalue()


def trace_summary(result: TraceResult, window_min: int) -> str:
    """What the audit trail keeps of a trace: the query and how many results (never the results)."""
    return (f"{result.since.isoformat()}..{result.until.isoformat()} ±{window_min} min: "
            f"{len(result.visits)} visits, {len(result.contacts)} contacts")


@dataclass(frozen=True)
class F1Plan:
    """What publishing traced contacts as F1 would change: new entries, and entries whose status or
    end date changes; holders already listed as F0 stay F0 (a contact list never lowers a case)."""

    new: list[bytes]
    changed: list[bytes]
    kept: list[bytes]
    until: date
    #: DCC holders: not published (a device looks a DCC up by its certificate hash, not by the keyed
    #: value the server holds); the health authority lists them by UCI (``checkpoint risk publish``)
    unlistable: list[bytes] = field(default_factory=list)


def plan_f1(current: np.ndarray, holders: list[bytes], until: date) -> F1Plan:
    """Compare the holders to the current risk set (sorted records)."""
    new, changed, kept = [], [], []
    keys = np.frombuffer(b"".join(holders), "V16") if holders else np.zeros(0, "V16")
    found, pos = lookup_many(current, keys)
    day = encode_until(until)
    for holder, hit, at in zip(holders, found.tolist(), pos.tolist(), strict=True):
        if not hit:
            new.append(holder)
        elif int(current["status"][at]) == int(RiskStatus.F0):
            kept.append(holder)
        elif int(current["status"][at]) != int(RiskStatus.F1) or int(current["until"][at]) != day:
            changed.append(holder)
        else:
            kept.append(holder)
    return F1Plan(new, changed, kept, until)


def publish_f1(publisher: RiskPublisher, holders: list[bytes], until: date, *, dry_run: bool,
               dcc: set[bytes] = frozenset()) -> tuple[F1Plan, int]:
    """Publish the traced contacts as F1 until ``until`` (the devices apply it at their next sync).

    ``dcc``: the holders known only from EU DCC scans (``TraceQueries.dcc_holders``), left out.
    Returns the plan and the new list version (the current one for a dry run or nothing to change).
    """
    if not holders or len(holders) > MAX_CONTACTS or any(len(h) != 16 for h in holders):
        raise TraceError(f"select 1 to {MAX_CONTACTS} contacts (16-byte holder values)")
    if until <= datetime.now(UTC).date():
        raise TraceError("an F1 listing needs an end date after today")
    listable = [h for h in holders if h not in dcc]
    plan = plan_f1(publisher.records(), listable, until)
    plan = replace(plan, unlistable=[h for h in holders if h in dcc])
    if dry_run or not (plan.new or plan.changed):
        return plan, publisher.latest_version
    version = publisher.publish([(h, RiskStatus.F1, until) for h in plan.new + plan.changed])
    return plan, version
