"""Scans per hour and refusals by reason, from the server's hourly counts, in Vietnam's local time.

The storage keeps one row per (device, hour, decision, reason) with a count, and the same for the
whole fleet, updated as batches are ingested (``fleet.store``), so a dashboard over months of
national logs reads thousands of rows, not millions.
Here those rows become what the charts show: today's 24 hours, the last 7 days, and the reasons
for refusals (and for checks by hand), for the whole fleet or one checkpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        LOCAL: tzinfo = ZoneInfo("Asia/Ho_Chi_Minh")
    except ZoneInfoNotFoundError:  # no tz database on the host: Vietnam keeps UTC+7 all year
        LOCAL = timezone(timedelta(hours=7), "ICT")
except ImportError:  # pragma: no cover - Python without zoneinfo
    LOCAL = timezone(timedelta(hours=7), "ICT")


@dataclass(frozen=True)
class HourCount:
    """One row of the hourly counts: ``hour`` is the UTC hour the scans fall in."""

    device_id: str
    hour: datetime
    decision: str
    reason: str
    count: int


@dataclass(frozen=True)
class Activity:
    """What the charts of one scope (the fleet, or one checkpoint) show."""

    today: date
    by_hour: tuple[int, ...]            # today's scans per local hour 0..23
    by_day: tuple[tuple[date, int], ...]  # the last 7 local days, oldest first
    decisions_today: dict[str, int]     # PASS / REFUSE / CHECK today
    reasons_today: dict[str, int]       # reasons of REFUSE and CHECK today, most frequent first
    reasons_week: dict[str, int]        # the same over the last 7 days

    @property
    def scans_today(self) -> int:
        return sum(self.by_hour)

    @property
    def refusals_today(self) -> int:
        return self.decisions_today.get("REFUSE", 0)


@dataclass(frozen=True)
class DayCounts:
    """A checkpoint's figures in the fleet table: scans and refusals today."""

    scans_today: int
    refusals_today: int


def day_counts(per_device: Mapping[str, Mapping[str, int]], device_ids: Iterable[str]) -> DayCounts:
    """Sum the devices' decisions of today (device id -> decision -> scans)."""
    scans = refusals = 0
    for device_id in device_ids:
        decisions = per_device.get(device_id)
        if decisions:
            scans += sum(decisions.values())
            refusals += decisions.get("REFUSE", 0)
    return DayCounts(scans, refusals)


def activity(rows: Iterable[HourCount], now: datetime, devices: set[str] | None = None) -> Activity:
    """Aggregate hourly counts (of ``devices`` only, when given) for today and the last 7 days."""
    local_now = now.astimezone(LOCAL)
    today = local_now.date()
    first_day = today - timedelta(days=6)
    by_hour = [0] * 24
    by_day: Counter[date] = Counter()
    decisions: Counter[str] = Counter()
    reasons_today: Counter[str] = Counter()
    reasons_week: Counter[str] = Counter()
    for row in rows:
        if devices is not None and row.device_id not in devices:
            continue
        local = row.hour.replace(tzinfo=row.hour.tzinfo or UTC).astimezone(LOCAL)
        day = local.date()
        if not first_day <= day <= today:
            continue
        by_day[day] += row.count
        doubtful = row.decision in ("REFUSE", "CHECK")
        if doubtful:
            reasons_week[row.reason] += row.count
        if day == today:
            by_hour[local.hour] += row.count
            decisions[row.decision] += row.count
            if doubtful:
                reasons_today[row.reason] += row.count
    days = tuple((first_day + timedelta(days=i), by_day[first_day + timedelta(days=i)]) for i in range(7))
    return Activity(today, tuple(by_hour), days, dict(decisions), dict(reasons_today.most_common()),
                    dict(reasons_week.most_common()))
