"""What the fleet view reads from the server database: last heartbeats, hourly counts, recent decisions.

A mixin of ``storage.SQLStorage`` (SQL with ``?`` placeholders, both back-ends). The heartbeat table
keeps one row per device, replaced on every heartbeat: the latest is all the fleet view needs.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sync.server.fleet.activity import HourCount
from sync.server.trace import TRACE_INDEXES

FLEET_SCHEMA = """
CREATE TABLE IF NOT EXISTS heartbeats (
    device_id TEXT PRIMARY KEY, received_at TEXT NOT NULL, body TEXT NOT NULL);
""" + TRACE_INDEXES


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

    def heartbeats(self) -> dict[str, tuple[datetime, str]]:
        """device id -> (received at, heartbeat JSON) for every device that ever sent one."""
        with self._lock:
            rows = self._all("SELECT device_id, received_at, body FROM heartbeats")
        return {d: (datetime.fromisoformat(at), body) for d, at, body in rows}

    def hourly_counts(self, since: datetime) -> list[HourCount]:
        """Decisions per device, UTC hour, decision and reason, for scans at or after ``since``.

        Device wall times are ISO-8601 UTC text, so the hour is their first 13 characters.
        """
        start = since.astimezone(UTC).isoformat()
        with self._lock:
            rows = self._all("SELECT device_id, substr(wall_time, 1, 13), decision, reason, COUNT(*) FROM records "
                             "WHERE wall_time >= ? GROUP BY 1, 2, 3, 4", (start,))
        out = []
        for device_id, hour, decision, reason, n in rows:
            try:
                at = datetime.fromisoformat(f"{hour}:00:00+00:00")
            except ValueError:  # a device wrote a wall time this server cannot read: not counted
                continue
            out.append(HourCount(device_id, at, decision, reason, int(n)))
        return out

    def recent_decisions(self, device_ids: list[str], limit: int = 20) -> list[tuple[str, str, str, str, str | None]]:
        """The latest decisions of some devices: (device id, wall time, decision, reason, kind); no holder."""
        if not device_ids:
            return []
        marks = ", ".join("?" * len(device_ids))
        with self._lock:
            return [tuple(r) for r in self._all(
                f"SELECT device_id, wall_time, decision, reason, kind FROM records WHERE device_id IN ({marks}) "
                "ORDER BY wall_time DESC LIMIT ?", (*device_ids, limit))]
