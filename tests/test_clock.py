from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.scan.clock import BUILD_FLOOR, FixedClock, SystemClock


def test_system_clock_untrusted_without_sync(tmp_path: Path):
    clock = SystemClock(timesync_flag=tmp_path / "absent")
    assert not clock.trusted()


def test_timesyncd_flag_makes_clock_trusted(tmp_path: Path):
    flag = tmp_path / "synchronized"
    flag.touch()
    assert SystemClock(timesync_flag=flag).trusted()


def test_server_time_corrects_a_stale_clock(tmp_path: Path):
    clock = SystemClock(timesync_flag=tmp_path / "absent")
    real = datetime.now(UTC) + timedelta(days=3)  # the device booted 3 days behind
    clock.accept_server_time(real)
    assert abs((clock.now() - real).total_seconds()) < 5
    assert clock.trusted()


def test_time_before_build_floor_is_never_trusted(tmp_path: Path):
    flag = tmp_path / "synchronized"
    flag.touch()
    clock = SystemClock(timesync_flag=flag)
    clock.accept_server_time(BUILD_FLOOR - timedelta(days=400))
    assert not clock.trusted()


def test_fixed_clock_advances():
    clock = FixedClock(datetime(2026, 3, 1))
    clock.advance(90)
    assert clock.now() == datetime(2026, 3, 1, 0, 1, 30, tzinfo=UTC)
    assert clock.monotonic() == 1090.0
