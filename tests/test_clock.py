"""The clock: a floor of signed times on disk, jumps against the monotonic clock, RTC and NTP.

Every clock here keeps its state in a real file; the wall and monotonic clocks are moved through
the clock's own time-source seams (the machine's clock is not ours to set).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.scan.clock import BUILD_FLOOR, ClockError, FixedClock, SysfsRtc, SystemClock

DAY = 86400.0


class Times:
    """A wall clock that can be set (like ``date -s``) and a monotonic clock that only runs."""

    def __init__(self) -> None:
        self.wall_shift = 0.0
        self.elapsed = 0.0

    def wall(self) -> float:
        return time.time() + self.elapsed + self.wall_shift

    def mono(self) -> float:
        return 5000.0 + self.elapsed

    def run(self, seconds: float) -> None:
        """Time passes: wall and monotonic move together."""
        self.elapsed += seconds

    def set_wall(self, shift_s: float) -> None:
        """Someone sets the wall clock (the monotonic clock does not move)."""
        self.wall_shift += shift_s


def _clock(tmp_path: Path, times: Times, *, boot: str = "boot-1", ntp: bool = False, rtc: Path | None = None,
           ) -> SystemClock:
    flag = tmp_path / "synchronized"
    if ntp:
        flag.touch()
    return SystemClock(state_path=tmp_path / "clock.json", timesync_flag=flag,
                       rtc=SysfsRtc(rtc) if rtc else None, wall=times.wall, monotonic=times.mono, boot=boot)


def _real_now() -> datetime:
    return datetime.now(UTC)


def test_untrusted_without_any_time_source(tmp_path: Path):
    clock = _clock(tmp_path, Times())
    assert not clock.trusted() and clock.reading().why_untrusted == "no_time_source"


def test_timesyncd_flag_makes_clock_trusted(tmp_path: Path):
    assert _clock(tmp_path, Times(), ntp=True).trusted()


def test_server_time_corrects_a_stale_clock(tmp_path: Path):
    times = Times()
    times.set_wall(-3 * DAY)  # the device booted 3 days behind
    clock = _clock(tmp_path, times)
    clock.accept_server_time(_real_now())
    assert abs((clock.now() - _real_now()).total_seconds()) < 5
    assert clock.trusted()


def test_signed_time_before_build_floor_is_refused(tmp_path: Path):
    clock = _clock(tmp_path, Times(), ntp=True)
    with pytest.raises(ClockError, match="older than the newest signed time"):
        clock.accept_server_time(BUILD_FLOOR - timedelta(days=400))
    assert clock.floor == BUILD_FLOOR


def test_wall_clock_turned_back_is_untrusted_until_the_next_signed_time(tmp_path: Path):
    times = Times()
    clock = _clock(tmp_path, times)
    clock.accept_server_time(_real_now())
    times.run(3600)
    assert clock.trusted()
    times.set_wall(-20 * DAY)  # offline, someone turns the clock back 20 days
    assert not clock.trusted()
    times.set_wall(+20 * DAY)  # and puts it right again: still untrusted, a jump was seen
    assert not clock.trusted() and clock.reading().why_untrusted == "jump"
    clock.accept_server_time(datetime.fromtimestamp(times.wall(), UTC))
    assert clock.trusted()


@pytest.mark.parametrize("jump_s", [-3600.0, +3600.0, +20 * DAY])
def test_a_jump_either_way_beyond_the_tolerance_is_untrusted(tmp_path: Path, jump_s: float):
    times = Times()
    clock = _clock(tmp_path, times, ntp=True)
    assert clock.trusted()
    times.run(600)
    times.set_wall(jump_s)
    assert not clock.trusted()


def test_drift_within_the_tolerance_stays_trusted(tmp_path: Path):
    times = Times()
    clock = _clock(tmp_path, times)
    clock.accept_server_time(_real_now())
    for _ in range(30):  # 30 days offline, the crystal 20 ppm fast
        times.run(DAY)
        times.set_wall(DAY * 20e-6)
        assert clock.trusted()


def test_ntp_answer_from_the_past_is_not_believed(tmp_path: Path):
    """A device that saw a signed time, rebooted, then got an NTP answer 10 days in the past."""
    times = Times()
    _clock(tmp_path, times).accept_server_time(_real_now())
    times.set_wall(-10 * DAY)  # timesyncd stepped the clock back, then raised its flag
    after_boot = _clock(tmp_path, times, boot="boot-2", ntp=True)
    assert not after_boot.trusted() and after_boot.reading().why_untrusted == "before_floor"
    # while running: an NTP step back is a jump
    (tmp_path / "other").mkdir()
    times2 = Times()
    running = _clock(tmp_path / "other", times2, ntp=True)
    assert running.trusted()
    times2.run(60)
    times2.set_wall(-2 * DAY)
    assert not running.trusted()


def test_signed_time_older_than_the_floor_is_refused(tmp_path: Path):
    times = Times()
    clock = _clock(tmp_path, times)
    published = _real_now()
    clock.note_signed_time(published, "risk")  # a signed list publication time raises the floor
    before = (tmp_path / "clock.json").read_bytes()
    with pytest.raises(ClockError):
        clock.accept_server_time(published - timedelta(days=20))  # a server clock gone back, or a replay
    assert clock.floor == published and (tmp_path / "clock.json").read_bytes() == before
    assert not clock.trusted()


def test_floor_survives_a_restart_and_only_moves_forward(tmp_path: Path):
    times = Times()
    first = _clock(tmp_path, times)
    signed = _real_now()
    first.accept_server_time(signed)
    first.note_signed_time(signed - timedelta(days=3), "trust_list")  # older: the floor stays
    saved = json.loads((tmp_path / "clock.json").read_text())
    assert datetime.fromisoformat(saved["floor"]) == signed and saved["floor_source"] == "server_time"

    # power cut; the Pi boots offline with the last saved time, 20 days behind (no RTC)
    times.set_wall(-20 * DAY)
    rebooted = _clock(tmp_path, times, boot="boot-2", ntp=True)
    assert rebooted.floor == signed and not rebooted.trusted()

    # another process raised the floor meanwhile: a write from this one never lowers it
    later = signed + timedelta(hours=1)
    other = _clock(tmp_path, Times(), boot="boot-2")
    other.note_signed_time(later, "risk")
    rebooted.note_signed_time(signed + timedelta(minutes=1), "policy")
    assert datetime.fromisoformat(json.loads((tmp_path / "clock.json").read_text())["floor"]) == later


def test_a_restart_in_the_same_boot_keeps_the_anchor_and_sees_a_jump_made_meanwhile(tmp_path: Path):
    times = Times()
    _clock(tmp_path, times).accept_server_time(_real_now() + timedelta(days=2))  # the system clock is 2 days slow
    times.run(120)
    restarted = _clock(tmp_path, times)  # daemon restarted by systemd, same boot
    assert restarted.trusted() and abs((restarted.now() - _real_now()).total_seconds() - 2 * DAY) < 200
    times.set_wall(-20 * DAY)
    assert not _clock(tmp_path, times).trusted()


def test_a_damaged_state_file_is_untrusted_until_a_signed_time_rewrites_it(tmp_path: Path, caplog):
    (tmp_path / "clock.json").write_text('{"floor": "yesterday"')
    clock = _clock(tmp_path, Times(), ntp=True)
    assert not clock.trusted() and "event=clock_state_unreadable" in caplog.text
    clock.accept_server_time(_real_now())
    assert clock.trusted()
    assert json.loads((tmp_path / "clock.json").read_text())["floor_source"] == "server_time"


def _rtc(tmp_path: Path, when: float | None) -> Path:
    rtc = tmp_path / "rtc0"
    rtc.mkdir(exist_ok=True)
    if when is not None:
        (rtc / "since_epoch").write_text(f"{int(when)}\n")
    return rtc


def test_rtc_keeps_time_trusted_after_an_offline_power_cut(tmp_path: Path):
    times = Times()
    _clock(tmp_path, times).accept_server_time(_real_now())
    times.run(3 * 3600)  # 3 hours without power: the RTC kept counting, the kernel set the clock from it
    clock = _clock(tmp_path, times, boot="boot-2", rtc=_rtc(tmp_path, times.wall()))
    assert clock.trusted() and clock.reading().anchor_source == "rtc"
    times.run(60)
    times.set_wall(-20 * DAY)  # and the jump check runs from the RTC's anchor
    assert not clock.trusted()


@pytest.mark.parametrize("rtc_state", ["battery_dead", "before_floor", "disagrees"])
def test_an_rtc_that_cannot_vouch_leaves_the_clock_untrusted(tmp_path: Path, rtc_state: str):
    times = Times()
    _clock(tmp_path, times).accept_server_time(_real_now())
    when = {"battery_dead": None, "before_floor": times.wall() - 30 * DAY, "disagrees": times.wall() + 2 * DAY}
    clock = _clock(tmp_path, times, boot="boot-2", rtc=_rtc(tmp_path, when[rtc_state]),
                   ntp=rtc_state == "disagrees")  # an RTC that disagrees overrules NTP as well
    assert not clock.trusted()


def test_fixed_clock_advances_and_ignores_signed_times():
    clock = FixedClock(datetime(2026, 3, 1))
    clock.advance(90)
    clock.accept_server_time(datetime(2030, 1, 1, tzinfo=UTC))
    assert clock.now() == datetime(2026, 3, 1, 0, 1, 30, tzinfo=UTC)
    assert clock.monotonic() == 1090.0
