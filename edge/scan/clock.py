"""Clock seam: wall time, monotonic time, and whether wall time can be trusted.

A Pi has no RTC: after a power cut offline it boots with a stale time and an expired pass
would look valid. Wall time is trusted only once something vouched for it (NTP sync seen by
systemd-timesyncd, or a signed server time received during sync) and it is not before the
build floor.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

#: No real wall time can be earlier than this (the release date of this software).
BUILD_FLOOR = datetime(2026, 1, 1, tzinfo=UTC)
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


class Clock(Protocol):
    """Narrow clock interface every component uses instead of ``datetime.now``."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def trusted(self) -> bool: ...


class SystemClock:
    """The device's clock, corrected by signed server time when NTP is not available."""

    def __init__(self, *, timesync_flag: Path = TIMESYNCD_FLAG, max_server_time_age: float = 7 * 86400):
        self._timesync_flag = timesync_flag
        self._offset = timedelta(0)
        self._server_time_at: float | None = None
        self._max_server_time_age = max_server_time_age
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def monotonic(self) -> float:
        return time.monotonic()

    def trusted(self) -> bool:
        if self.now() < BUILD_FLOOR:
            return False
        if self._timesync_flag.exists():
            return True
        with self._lock:
            at = self._server_time_at
        return at is not None and time.monotonic() - at < self._max_server_time_age

    def accept_server_time(self, server_now: datetime, *, max_skew: timedelta = timedelta(seconds=2)) -> None:
        """Adopt a verified server time: keep the offset if the local clock is off by more than max_skew."""
        local = datetime.now(UTC)
        with self._lock:
            skew = server_now - local
            self._offset = skew if abs(skew) > max_skew else timedelta(0)
            self._server_time_at = time.monotonic()


class FixedClock:
    """A clock for tests, ``verify --at`` and replays: time stands still unless advanced."""

    def __init__(self, at: datetime, *, trusted: bool = True):
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        self._at = at
        self._mono = 1000.0
        self._trusted = trusted

    def now(self) -> datetime:
        return self._at

    def monotonic(self) -> float:
        return self._mono

    def trusted(self) -> bool:
        return self._trusted

    def advance(self, seconds: float) -> None:
        self._at += timedelta(seconds=seconds)
        self._mono += seconds


def boot_id() -> str:
    """The kernel's boot id (changes every boot), or a per-process stand-in off Linux."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"pid-{os.getpid()}-{int(time.time())}"
