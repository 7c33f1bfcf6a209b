"""What the fleet view reads from the server database: last heartbeats, hourly counts, recent decisions.

A mixin of ``storage.SQLStorage`` (SQL with ``?`` placeholders, both back-ends). The heartbeat table
keeps one row per device, replaced on every heartbeat: the latest is all the fleet view needs.

Hourly counts come from ``hourly_activity``, a roll-up kept in the ingest transaction: each batch
adds its newly stored records, counted per (device, UTC hour, decision, reason), in ONE upsert.
Records a re-pushed batch repeats are never stored, so never counted (exactly once, with no
watermark to keep: a device's backlog from last week lands in last week's hours). The fleet's
totals are rows of their own, so the fleet charts read a few thousand rows however many devices
there are; they are spread over ``FLEET_TOTAL_SHARDS`` rows per hour, decision and reason (a device
always adds to the same one), because with one row every batch of the hour would wait for the one
before it to commit. Rows are upserted in key order, so concurrent batches never deadlock.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from sync.server.fleet.activity import HourCount
from sync.server.trace import TRACE_INDEXES

FLEET_SCHEMA = """
CREATE TABLE IF NOT EXISTS heartbeats (
    device_id TEXT PRIMARY KEY, received_at TEXT NOT NULL, body TEXT NOT NULL);
""" + TRACE_INDEXES

#: the device id the fleet's totals are reported under (no device id can start with ``*``)
FLEET_TOTAL = "*"
#: rows the fleet's totals of one hour, decision and reason are spread over (``*00`` .. ``*15``)
FLEET_TOTAL_SHARDS = 16
FLEET_TOTAL_ROWS = tuple(f"{FLEET_TOTAL}{i:02d}" for i in range(FLEET_TOTAL_SHARDS))


def fleet_total_row(device_id: str) -> str:
    """The fleet-total row a device's batches add to (the same in every server process)."""
    return FLEET_TOTAL_ROWS[zlib.crc32(device_id.encode()) % FLEET_TOTAL_SHARDS]


#: the roll-up of every record held, into an empty ``hourly_activity`` (step 6; bulk-loaded benchmarks);
#: the fleet's totals go to the first shard (readers add the shards up).
#: Hours are the first 13 characters of the device's wall time (ISO-8601 UTC: ``2021-09-01T08``). Rows
#: are written in hour order, as ingest makes them: one day's rows are then near each other on disk
ROLLUP_FILL = f"""
INSERT INTO hourly_activity (device_id, hour, decision, reason, scans)
    SELECT device_id, substr(wall_time, 1, 13), decision, reason, COUNT(*) FROM records GROUP BY 1, 2, 3, 4
    ORDER BY 2, 1;
INSERT INTO hourly_activity (device_id, hour, decision, reason, scans)
    SELECT '{FLEET_TOTAL_ROWS[0]}', hour, decision, reason, SUM(scans) FROM hourly_activity GROUP BY 2, 3, 4 ORDER BY 2;
"""
#: schema step 6: the hourly roll-up, filled from the records held when it is created
ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS hourly_activity (
    device_id TEXT NOT NULL, hour TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL,
    scans BIGINT NOT NULL, PRIMARY KEY (device_id, hour, decision, reason));
CREATE INDEX IF NOT EXISTS hourly_activity_by_hour ON hourly_activity (hour);
""" + ROLLUP_FILL
#: rows per upsert statement (SQLite allows 32,766 parameters; a batch rarely needs more than one)
_UPSERT_ROWS = 1000


def hour_counts(rows: Iterable[tuple]) -> Counter[tuple[str, str, str]]:
    """(hour, decision, reason) -> records, of storage rows (RECORD_COLUMNS order) one batch stored."""
    return Counter((row[3][:13], row[11], row[12]) for row in rows)


def hour_counts_of(stored: Iterable[tuple[str, str, str]]) -> Counter[tuple[str, str, str]]:
    """The same from (wall time, decision, reason) triples (what an INSERT ... RETURNING gives)."""
    return Counter((wall[:13], decision, reason) for wall, decision, reason in stored)


def _rollup_rows(device_id: str, counts: Counter[tuple[str, str, str]]) -> list[tuple]:
    return sorted([(device_id, *key, n) for key, n in counts.items()]
                  + [(fleet_total_row(device_id), *key, n) for key, n in counts.items()])  # one lock order


def _rollup_upsert(rows: list[tuple]) -> tuple[str, tuple]:
    return ("INSERT INTO hourly_activity (device_id, hour, decision, reason, scans) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
            + " ON CONFLICT (device_id, hour, decision, reason) DO UPDATE SET scans = hourly_activity.scans + "
              "excluded.scans", tuple(v for row in rows for v in row))


def add_to_rollup(run: Callable[[str, tuple], object], device_id: str,
                  counts: Counter[tuple[str, str, str]]) -> None:
    """Add one batch's counts to the device's and the fleet's hours, inside the batch's transaction."""
    if not counts:
        return
    rows = _rollup_rows(device_id, counts)
    for i in range(0, len(rows), _UPSERT_ROWS):
        run(*_rollup_upsert(rows[i:i + _UPSERT_ROWS]))


def with_rollup(device_id: str, counts: Counter[tuple[str, str, str]],
                then: tuple[str, tuple]) -> list[tuple[str, tuple]]:
    """The statements (``?`` placeholders, PostgreSQL) that add a batch's counts to the roll-up and
    then run ``then``, in order: the last upsert is a data-modifying CTE of ``then``, so a usual
    batch (one chunk of roll-up rows) ends its push with one statement and round trip, not two."""
    rows = _rollup_rows(device_id, counts)
    chunks = [_rollup_upsert(rows[i:i + _UPSERT_ROWS]) for i in range(0, len(rows), _UPSERT_ROWS)]
    if not chunks:
        return [then]
    upsert, params = chunks.pop()
    return [*chunks, (f"WITH rollup AS ({upsert}) {then[0]}", params + then[1])]


def _hour(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H")


class FleetQueries:
    """Heartbeats and activity; the SQL back-ends provide ``_all``/``_exec`` and ``_lock``."""

    _lock: threading.Lock

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def _exec(self, sql: str, params: tuple = ()) -> None:
        raise NotImplementedError

    def record_heartbeat(self, device_id: str, received_at: datetime, body: str) -> None:
        """Keep the device's latest heartbeat (the server's receive time is its "last seen")."""
        with self._lock:
            self._exec("INSERT INTO heartbeats (device_id, received_at, body) VALUES (?, ?, ?) "
                       "ON CONFLICT (device_id) DO UPDATE SET received_at = excluded.received_at, "
                       "body = excluded.body", (device_id, received_at.astimezone(UTC).isoformat(), body))

    def heartbeats(self, device_ids: list[str] | None = None) -> dict[str, tuple[datetime, str]]:
        """device id -> (received at, heartbeat JSON) for every device (or each of ``device_ids``)
        that ever sent one."""
        if device_ids is not None and not device_ids:
            return {}
        where = f" WHERE device_id IN ({', '.join('?' * len(device_ids))})" if device_ids else ""
        with self._lock:
            rows = self._all(f"SELECT device_id, received_at, body FROM heartbeats{where}", tuple(device_ids or ()))
        return {d: (datetime.fromisoformat(at), body) for d, at, body in rows}

    def device_ids(self) -> list[str]:
        """Every enrolled device (the fleet view adds those the registry lacks)."""
        with self._lock:
            return [r[0] for r in self._all("SELECT device_id FROM devices ORDER BY device_id")]

    def hourly_counts(self, since: datetime, device_ids: Iterable[str] | None = None) -> list[HourCount]:
        """Decisions per UTC hour, decision and reason from the hour of ``since`` on: of the given
        devices (one row per device), or of the whole fleet (device ``FLEET_TOTAL``, its shards added up)."""
        ids = list(FLEET_TOTAL_ROWS) if device_ids is None else list(device_ids)
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        with self._lock:
            rows = self._all(f"SELECT device_id, hour, decision, reason, scans FROM hourly_activity WHERE device_id "
                             f"IN ({marks}) AND hour >= ?", (*ids, _hour(since)))
        if device_ids is None:
            fleet: Counter[tuple[str, str, str]] = Counter()
            for _shard, hour, decision, reason, n in rows:
                fleet[(hour, decision, reason)] += int(n)
            rows = [(FLEET_TOTAL, *key, n) for key, n in fleet.items()]
        out = []
        for device_id, hour, decision, reason, n in rows:
            try:
                at = datetime.fromisoformat(f"{hour}:00:00+00:00")
            except ValueError:  # a device wrote a wall time this server cannot read: not counted
                continue
            out.append(HourCount(device_id, at, decision, reason, int(n)))
        return out

    def decisions_since(self, since: datetime) -> dict[str, Counter[str]]:
        """device id -> decision -> scans from the hour of ``since`` on (the fleet table's "today")."""
        with self._lock:
            rows = self._all("SELECT device_id, decision, SUM(scans) FROM hourly_activity WHERE hour >= ? "
                             "AND device_id NOT LIKE ? GROUP BY device_id, decision", (_hour(since), f"{FLEET_TOTAL}%"))
        out: dict[str, Counter[str]] = {}
        for device_id, decision, n in rows:
            out.setdefault(device_id, Counter())[decision] = int(n)
        return out

    def recent_decisions(self, device_ids: list[str], limit: int = 20) -> list[tuple[str, str, str, str, str | None]]:
        """The latest decisions of some devices: (device id, wall time, decision, reason, kind); no holder.

        One query per device, each the newest end of its ``(device_id, wall_time)`` index: with
        ``device_id IN (...)`` the planner reads every record of the devices (a month of a busy
        device is ten thousand rows) to sort them.
        """
        rows: list[tuple[str, str, str, str, str | None]] = []
        for device_id in dict.fromkeys(device_ids):
            with self._lock:
                rows.extend(tuple(r) for r in self._all(
                    "SELECT device_id, wall_time, decision, reason, kind FROM records WHERE device_id = ? "
                    "ORDER BY wall_time DESC LIMIT ?", (device_id, limit)))
        return sorted(rows, key=lambda r: r[1], reverse=True)[:limit]
