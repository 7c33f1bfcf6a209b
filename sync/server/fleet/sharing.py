"""Pass-sharing alarms across checkpoints: one pass seen at two places too far apart for the time
between the scans (a photo of a pass passed around, or a cloned QR code).

From the registry's coordinates: two consecutive scans of the same holder at different checkpoints
whose great-circle distance would need more than ``max_speed_kmh`` are an alarm. The dashboard
shows the places and times, never the holder.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from sync.server.registry import Registry, device_checkpoint
from sync.wire.protocol import wall_instant

log = logging.getLogger(__name__)

#: faster than this between two checkpoints is not one person travelling (motorway speed, margin)
MAX_SPEED_KMH = 150.0
#: scans looked at for the alarms (a recent day is what commanders act on)
LOOKBACK = timedelta(hours=24)
MAX_ROWS = 200_000


@dataclass(frozen=True)
class SharingAlarm:
    first_checkpoint: str
    first_at: datetime
    second_checkpoint: str
    second_at: datetime
    distance_km: float

    @property
    def speed_kmh(self) -> float:
        hours = max((self.second_at - self.first_at).total_seconds() / 3600, 1 / 3600)
        return self.distance_km / hours


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, Earth radius 6,371 km)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


class SharingQueries:
    """A mixin of ``storage.SQLStorage``: the recent scans of holders seen at more than one device."""

    _lock: threading.Lock

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def multi_device_scans(self, since: str, limit: int = MAX_ROWS) -> list[tuple[bytes, str, str]]:
        with self._lock:
            return [(bytes(h), d, w) for h, d, w in self._all(
                "SELECT holder_hash, device_id, wall_time FROM records WHERE wall_time >= ? AND holder_hash IN ("
                "SELECT holder_hash FROM records WHERE wall_time >= ? AND holder_hash IS NOT NULL "
                "GROUP BY holder_hash HAVING COUNT(DISTINCT device_id) > 1) ORDER BY holder_hash, wall_time LIMIT ?",
                (since, since, limit))]


def sharing_alarms(scans: list[tuple[bytes, str, str]], registry: Registry, *,
                   max_speed_kmh: float = MAX_SPEED_KMH) -> list[SharingAlarm]:
    """Consecutive scans of one holder at two placed checkpoints, too far apart for the time between."""
    by_holder: dict[bytes, list[tuple[datetime, str]]] = defaultdict(list)
    for holder, device_id, wall in scans:
        at = wall_instant(wall)
        if at is None:
            continue
        by_holder[holder].append((at, device_checkpoint(device_id)))
    alarms = []
    for visits in by_holder.values():
        visits.sort()
        for (t1, c1), (t2, c2) in pairwise(visits):
            a, b = registry.checkpoints.get(c1), registry.checkpoints.get(c2)
            if c1 == c2 or a is None or b is None or a.latitude is None or b.latitude is None:
                continue
            km = distance_km(a.latitude, a.longitude or 0.0, b.latitude, b.longitude or 0.0)
            alarm = SharingAlarm(c1, t1, c2, t2, km)
            if alarm.speed_kmh > max_speed_kmh:
                alarms.append(alarm)
    return sorted(alarms, key=lambda a: a.second_at, reverse=True)


def recent_alarms(store: SharingQueries, registry: Registry, now: datetime) -> list[SharingAlarm]:
    return sharing_alarms(store.multi_device_scans((now - LOOKBACK).astimezone(UTC).isoformat()), registry)


class AlarmBoard:
    """The alarms the fleet view shows, recomputed in the background at most every ``refresh_s``.

    Finding them reads a whole day of records (about a second per few hundred thousand scans, more
    than a page may take at national scale), so a page shows the last result and, when it is older
    than ``refresh_s``, starts one recomputation in a thread for the pages after it. Only the first
    page after start waits for it. One query per minute per admin process, however many commanders
    look.
    """

    def __init__(self, store: SharingQueries, registry: Callable[[], Registry], refresh_s: float = 60.0):
        self._store, self._registry, self.refresh_s = store, registry, refresh_s
        self._lock = threading.Lock()
        self._result: tuple[datetime, list[SharingAlarm]] | None = None
        self._running = False

    def _compute(self) -> tuple[datetime, list[SharingAlarm]]:
        now = datetime.now(UTC)
        result = (now, recent_alarms(self._store, self._registry(), now))
        with self._lock:
            self._result, self._running = result, False
        return result

    def _refresh_in_background(self) -> None:
        try:
            self._compute()
        except Exception as exc:  # the page keeps the last result; the next page tries again
            with self._lock:
                self._running = False
            log.error("event=sharing_alarms_failed error=%r action=showing the previous alarms; check the database",
                      exc)

    def current(self, now: datetime) -> tuple[datetime, list[SharingAlarm]]:
        """(when computed, alarms): at most ``refresh_s`` old plus one computation."""
        with self._lock:
            result, stale = self._result, self._result is None or (now - self._result[0]).total_seconds() >= \
                self.refresh_s
            start = stale and result is not None and not self._running
            if start:
                self._running = True
        if result is None:
            return self._compute()
        if start:
            threading.Thread(target=self._refresh_in_background, name="sharing-alarms", daemon=True).start()
        return result
