"""Monthly partitions of the PostgreSQL ``records`` table: create ahead, drop by retention.

``records`` is ``PARTITION BY RANGE (scanned_at)`` with one partition per calendar month (UTC),
named ``records_pYYYY_MM``, and a default partition for anything else (a device clock far off,
an unparseable time). Queries by scan time touch only the months they ask for, and retention
drops whole months with ``DROP TABLE``: no DELETE, no vacuum, no bloat.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sync.wire.protocol import wall_instant

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

#: partitions are made only for months in this range; other times go to the default partition
SANE_FROM = datetime(2020, 1, 1, tzinfo=UTC)
SANE_TO = datetime(2100, 1, 1, tzinfo=UTC)
#: months made ahead of now at start-up and by the retention command
MONTHS_AHEAD = 3
_NAME = re.compile(r"^records_p(\d{4})_(\d{2})$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def month_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"records_p{month.year:04d}_{month.month:02d}"


def scan_time(wall_time: str) -> datetime:
    """The partition key of a record: its wall time as a UTC instant (naive means UTC); the epoch
    if the device wrote something that is not an ISO time (it lands in the default partition)."""
    at = wall_instant(wall_time)
    return EPOCH if at is None else at


def existing(db: psycopg.Connection) -> dict[datetime, str]:
    """Month -> partition name of the monthly partitions of ``records`` (in the search path)."""
    rows = db.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                      "WHERE i.inhparent = 'records'::regclass").fetchall()
    out = {}
    for (name,) in rows:
        found = _NAME.match(name)
        if found:
            out[datetime(int(found[1]), int(found[2]), 1, tzinfo=UTC)] = name
    return out


def _create(db: psycopg.Connection, month: datetime) -> None:
    """Create one month's partition, moving rows of that month out of the default partition first
    (PostgreSQL refuses to attach a range the default partition already holds rows of)."""
    name, lo, hi = partition_name(month), month, add_months(month, 1)
    with db.transaction():
        db.execute("LOCK TABLE records_default IN ACCESS EXCLUSIVE MODE")
        db.execute("CREATE TEMP TABLE records_moving (LIKE records)")
        db.execute("WITH moved AS (DELETE FROM records_default WHERE scanned_at >= %s AND scanned_at < %s "
                   "RETURNING *) INSERT INTO records_moving SELECT * FROM moved", (lo, hi))
        moved = db.execute("SELECT count(*) FROM records_moving").fetchone()[0]
        db.execute(f"CREATE TABLE {name} PARTITION OF records FOR VALUES FROM ('{lo.isoformat()}') "
                   f"TO ('{hi.isoformat()}')")
        db.execute("INSERT INTO records SELECT * FROM records_moving")
        db.execute("DROP TABLE records_moving")
    log.info("event=partition_created name=%s moved_from_default=%d", name, moved)


def ensure(db: psycopg.Connection, months: Iterable[datetime]) -> list[str]:
    """Create the monthly partitions of ``months`` that do not exist yet; return their names."""
    have = existing(db)
    made = []
    for month in sorted({month_start(m) for m in months}):
        if month not in have and SANE_FROM <= month < SANE_TO:
            _create(db, month)
            made.append(partition_name(month))
    return made


def ensure_around(db: psycopg.Connection, now: datetime, ahead: int = MONTHS_AHEAD) -> list[str]:
    """Partitions from last month to ``ahead`` months after this one."""
    this = month_start(now)
    return ensure(db, [add_months(this, n) for n in range(-1, ahead + 1)])


def maintain(db: psycopg.Connection, now: datetime) -> list[str]:
    """``ensure_around`` now, plus a partition for every sane month found in the default partition
    (its rows move there), so the default partition keeps only times no month should hold."""
    months = [row[0] for row in db.execute(
        "SELECT DISTINCT date_trunc('month', scanned_at, 'UTC') FROM records_default "
        "WHERE scanned_at >= %s AND scanned_at < %s", (SANE_FROM, SANE_TO)).fetchall()]
    return ensure_around(db, now) + ensure(db, months)


@dataclass(frozen=True)
class RetentionResult:
    dropped: list[str]
    deleted_from_default: int
    kept_from: datetime


def drop_before(db: psycopg.Connection, cutoff: datetime, *, dry_run: bool = False) -> RetentionResult:
    """Drop every monthly partition that ends at or before ``cutoff`` and delete older rows of the
    default partition. Whole months only: records from ``cutoff``'s month on are all kept."""
    kept_from = month_start(cutoff)
    old = sorted((m, name) for m, name in existing(db).items() if add_months(m, 1) <= cutoff)
    with db.transaction():
        if dry_run:
            deleted = db.execute("SELECT count(*) FROM records_default WHERE scanned_at < %s",
                                 (kept_from,)).fetchone()[0]
        else:
            for _month, name in old:
                db.execute(f"DROP TABLE {name}")
                log.info("event=partition_dropped name=%s", name)
            deleted = db.execute("DELETE FROM records_default WHERE scanned_at < %s", (kept_from,)).rowcount
    return RetentionResult([name for _m, name in old], deleted, kept_from)
