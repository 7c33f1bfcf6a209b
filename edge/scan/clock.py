"""Clock seam: wall time, monotonic time, and whether wall time can be trusted.

Expired passes look valid on a clock that was turned back, so wall time is trusted only when
all of these hold:

- it is not earlier than the *floor*: the newest publisher-signed time this device has seen
  (signed server time, signed list publication times). The floor is kept in a small file written
  atomically, survives restarts and power cuts, and only ever moves forward;
- something vouched for it since boot: a signed server time (the anchor), else a battery-backed
  hardware RTC (Pi 5, DS3231 on I2C) that agrees with the system clock, else an NTP sync seen by
  systemd-timesyncd (``clock.trust_ntp``);
- since that anchor, wall time has advanced like the monotonic clock (within
  ``clock.jump_tolerance_s`` plus crystal drift). A jump in either direction makes the clock
  untrusted until the next signed server time, even if the wall clock later looks right again.

A signed server time older than the floor is refused (a server clock gone back, or a replay).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from sync.wire.errors import CheckpointError
from sync.wire.fsutil import write_atomic

log = logging.getLogger(__name__)

#: No real wall time can be earlier than this (the release date of this software).
BUILD_FLOOR = datetime(2026, 1, 1, tzinfo=UTC)
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
SYSFS_RTC = Path("/sys/class/rtc/rtc0")
#: how far the wall clock may wander from the monotonic clock per second (a Pi's crystal: ~20-50 ppm)
DRIFT_PER_SECOND = 100e-6


class ClockError(CheckpointError, ValueError):
    """A signed time that must not be believed (older than the newest one already seen)."""


class Clock(Protocol):
    """Narrow clock interface every component uses instead of ``datetime.now``."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def trusted(self) -> bool: ...

    def accept_server_time(self, server_now: datetime) -> None:
        """A publisher-signed, fresh (nonce-bound) server time; raises ClockError if it must not be believed."""

    def note_signed_time(self, signed_at: datetime, source: str) -> None:
        """A publisher-signed time in the past (a list's publication time): raises the floor only."""


# -- hardware RTC seam ----------------------------------------------------------------------------
class Rtc(Protocol):
    """A battery-backed real-time clock: its time, or None when absent, unset or unreadable."""

    name: str

    def read(self) -> datetime | None: ...


class NoRtc:
    """``clock.rtc = "none"``: the device has no RTC (a Pi 4, or a Pi 5 without its battery)."""

    name = "none"

    def read(self) -> datetime | None:
        return None


class SysfsRtc:
    """The kernel's RTC class device: ``since_epoch`` under ``/sys/class/rtc/rtc0`` (Pi 5 RTC, DS3231).

    sysfs is world-readable, where ``/dev/rtc0`` needs root; the kernel reads the chip on every read.
    An RTC that lost its battery fails the read (EINVAL) or reports a time before the floor.
    """

    name = "sysfs"

    def __init__(self, path: Path = SYSFS_RTC):
        self.path = path

    def read(self) -> datetime | None:
        try:
            seconds = int((self.path / "since_epoch").read_text().strip())
            return datetime.fromtimestamp(seconds, UTC)
        except (OSError, ValueError, OverflowError):
            return None


# -- the persisted floor ----------------------------------------------------------------------------
class _Anchor(BaseModel):
    """Wall time vouched for at one monotonic instant of one boot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: AwareDatetime
    monotonic: float
    boot_id: str
    source: str
    #: correction to the system clock in force at the anchor (signed server time vs. system clock)
    offset_s: float = 0.0


class ClockState(BaseModel):
    """The clock's file: the trusted-time floor and the last anchor (reused after a restart in the same boot)."""

    model_config = ConfigDict(extra="forbid")

    floor: AwareDatetime
    floor_source: str
    anchor: _Anchor | None = None


@dataclass(frozen=True)
class ClockReading:
    """What ``checkpoint status`` and tests need to know about the clock."""

    now: datetime
    trusted: bool
    floor: datetime
    anchor_source: str | None
    why_untrusted: str | None


class SystemClock:
    """The device's clock: system wall time, corrected by signed server time, checked against a floor.

    ``wall`` and ``monotonic`` are the time sources (``time.time`` / ``time.monotonic``; tests move
    the wall clock through ``wall``). ``state_path`` None keeps the floor in memory only (tools).
    """

    def __init__(self, *, state_path: Path | None = None, rtc: Rtc | None = None,
                 timesync_flag: Path | None = TIMESYNCD_FLAG, jump_tolerance_s: float = 60.0,
                 max_skew_s: float = 2.0, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, boot: str | None = None):
        self._state_path = state_path
        self._rtc = rtc or NoRtc()
        self._timesync_flag = timesync_flag
        self._tolerance = timedelta(seconds=jump_tolerance_s)
        self._max_skew = timedelta(seconds=max_skew_s)
        self._wall, self._mono = wall, monotonic
        self._boot = boot or boot_id()
        self._lock = threading.Lock()
        self._floor, self._floor_source = BUILD_FLOOR, "build"
        self._anchor: _Anchor | None = None
        self._offset = timedelta(0)
        #: why the clock is untrusted until the next signed server time (a jump, a damaged file), or None
        self._distrust: str | None = None
        self._rtc_warned = False
        self._load()

    # -- reading -----------------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC) + self._offset

    def monotonic(self) -> float:
        return self._mono()

    def trusted(self) -> bool:
        with self._lock:
            return self._why_untrusted(self.now(), self._mono()) is None

    def reading(self) -> ClockReading:
        """Now, whether it is trusted and why not (checks for a jump as a side effect)."""
        with self._lock:
            now, mono = self.now(), self._mono()
            why = self._why_untrusted(now, mono)
            return ClockReading(now, why is None, self._floor, self._anchor.source if self._anchor else None, why)

    @property
    def floor(self) -> datetime:
        return self._floor

    def _why_untrusted(self, now: datetime, mono: float) -> str | None:
        if self._anchor is not None and self._distrust is None:
            self._check_for_jump(self._anchor, now, mono)
        if self._distrust is not None:
            return self._distrust
        if now < BUILD_FLOOR:
            return "before_build"
        if now < self._floor - self._tolerance:
            return "before_floor"  # turned back past a signed time, or an NTP answer from the past
        if self._anchor is None:
            self._anchor = self._local_anchor(now, mono)
            if self._anchor is None:
                return "no_time_source"
        return None

    def _check_for_jump(self, anchor: _Anchor, now: datetime, mono: float) -> None:
        """Latch distrust when wall time has not moved like the monotonic clock since the anchor."""
        elapsed = mono - anchor.monotonic
        expected = anchor.at + timedelta(seconds=elapsed)
        allowed = self._tolerance + timedelta(seconds=abs(elapsed) * DRIFT_PER_SECOND)
        if elapsed >= 0 and abs(now - expected) <= allowed:
            return
        self._distrust = "jump"
        log.error("event=clock_jump wall=%s expected=%s jump_s=%.0f anchor=%s action=time-dependent verdicts are "
                  "CHECK until the next signed server time; look for someone setting the clock or a bad NTP server",
                  now.isoformat(timespec="seconds"), expected.isoformat(timespec="seconds"),
                  (now - expected).total_seconds(), anchor.source)

    def _local_anchor(self, now: datetime, mono: float) -> _Anchor | None:
        """Trust without a signed time this boot: a battery-backed RTC agreeing with the system clock, or NTP."""
        rtc_time = self._rtc.read()
        if rtc_time is not None and rtc_time >= self._floor - self._tolerance and rtc_time >= BUILD_FLOOR:
            if abs(rtc_time - now) <= self._tolerance:
                log.info("event=clock_trusted source=rtc rtc=%s", rtc_time.isoformat(timespec="seconds"))
                return self._new_anchor(now, mono, "rtc")
            if not self._rtc_warned:
                self._rtc_warned = True
                log.warning("event=clock_rtc_disagrees rtc=%s wall=%s action=trusting neither (nor NTP) until a "
                            "signed server time; check the RTC and who set the clock", rtc_time.isoformat(),
                            now.isoformat())
            return None
        if self._timesync_flag is not None and self._timesync_flag.exists():
            log.info("event=clock_trusted source=ntp wall=%s", now.isoformat(timespec="seconds"))
            return self._new_anchor(now, mono, "ntp")
        return None

    def _new_anchor(self, at: datetime, mono: float, source: str) -> _Anchor:
        return _Anchor(at=at, monotonic=mono, boot_id=self._boot, source=source,
                       offset_s=self._offset.total_seconds())

    # -- signed times --------------------------------------------------------------------------------
    def accept_server_time(self, server_now: datetime) -> None:
        """Adopt a verified server time: new anchor, system-clock correction, floor raised, distrust cleared."""
        server_now = _aware(server_now)
        with self._lock:
            if server_now < self._floor - self._tolerance or server_now < BUILD_FLOOR:
                raise ClockError(f"signed server time {server_now.isoformat()} is older than the newest signed "
                                 f"time seen ({self._floor.isoformat()}, {self._floor_source}): refused; the "
                                 f"server's clock went back or the answer was replayed")
            mono = self._mono()
            skew = server_now - datetime.fromtimestamp(self._wall(), UTC)
            self._offset = skew if abs(skew) > self._max_skew else timedelta(0)
            self._anchor = self._new_anchor(server_now, mono, "server_time")
            if self._distrust is not None:
                log.info("event=clock_trusted_again was=%s source=server_time", self._distrust)
            self._distrust = None
            self._raise_floor(server_now, "server_time")
            self._save()

    def note_signed_time(self, signed_at: datetime, source: str) -> None:
        """A list's signed publication time: the real time is at least this, from now on and after reboots."""
        with self._lock:
            if self._raise_floor(_aware(signed_at), source):
                self._save()

    def _raise_floor(self, signed_at: datetime, source: str) -> bool:
        if signed_at <= self._floor:
            return False
        self._floor, self._floor_source = signed_at, source
        return True

    # -- the file ------------------------------------------------------------------------------------
    def _load(self) -> None:
        path = self._state_path
        if path is None or not path.exists():
            return
        try:
            state = ClockState.model_validate_json(path.read_bytes())
        except (OSError, ValidationError) as exc:
            self._distrust = "state_damaged"
            log.error("event=clock_state_unreadable path=%s error=%r action=clock untrusted until the next signed "
                      "server time (sync); the file is rewritten then", path, str(exc)[:200])
            return
        self._floor, self._floor_source = max(state.floor, BUILD_FLOOR), state.floor_source
        anchor = state.anchor
        if anchor is not None and anchor.boot_id == self._boot:  # a restart in the same boot keeps its anchor
            self._anchor, self._offset = anchor, timedelta(seconds=anchor.offset_s)

    def _save(self) -> None:
        path = self._state_path
        if path is None:
            return
        floor, source = self._floor, self._floor_source
        try:  # another process (``checkpoint sync``) may have raised the floor meanwhile: never lower it
            other = ClockState.model_validate_json(path.read_bytes())
            if other.floor > floor:
                floor, source = other.floor, other.floor_source
                self._floor, self._floor_source = floor, source
        except (OSError, ValidationError):
            pass
        state = ClockState(floor=floor, floor_source=source, anchor=self._anchor)
        try:
            write_atomic(path, state.model_dump_json(indent=1).encode())
        except OSError as exc:
            log.error("event=clock_state_write_failed path=%s error=%r action=check the SD card; the floor is "
                      "kept in memory until the next signed time", path, str(exc))


class FixedClock:
    """A clock for tests, ``verify --at`` and replays: time stands still unless advanced; signed times are ignored."""

    def __init__(self, at: datetime, *, trusted: bool = True):
        self._at = _aware(at)
        self._mono = 1000.0
        self._trusted = trusted

    def now(self) -> datetime:
        return self._at

    def monotonic(self) -> float:
        return self._mono

    def trusted(self) -> bool:
        return self._trusted

    def accept_server_time(self, server_now: datetime) -> None:
        pass

    def note_signed_time(self, signed_at: datetime, source: str) -> None:
        pass

    def advance(self, seconds: float) -> None:
        self._at += timedelta(seconds=seconds)
        self._mono += seconds


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def boot_id() -> str:
    """The kernel's boot id (changes every boot), or a per-process stand-in off Linux."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"pid-{os.getpid()}-{int(time.time())}"
