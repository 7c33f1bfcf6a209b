"""Fleet health rules and the commanders' pages' words and colours (the end-to-end page test
with simulated devices is in test_fleet_dashboard.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.passes.credential import PassKind
from sync.server.fleet.activity import LOCAL, HourCount, activity
from sync.server.fleet.health import Health, checkpoint_health, device_health
from sync.server.fleet.pages import DECISION_COLOUR, HEALTH_COLOUR, HEALTH_TEXT, KIND_TEXT, TEXT, reason_text
from sync.server.registry import Checkpoint
from sync.wire.protocol import Heartbeat
from sync.wire.reasons import Reason

NOW = datetime(2026, 12, 3, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội


def beat(**changes) -> Heartbeat:
    base = dict(device_id="HN-1-1", sent_at=NOW.isoformat(), software_version="0.1.0", uptime_s=3600.0,
                state="running", faults=[], clock_trusted=True, trust_version=3, policy_version=2, risk_version=9,
                risk_published_at=(NOW - timedelta(hours=2)).isoformat(), backlog=0)
    return Heartbeat(**{**base, **changes})


@pytest.mark.parametrize("heartbeat, received, expected", [
    (beat(), NOW - timedelta(minutes=1), Health.OK),
    (beat(), NOW - timedelta(hours=1), Health.DOWN),
    (None, None, Health.NEVER_SEEN),
    (beat(faults=["camera_lost"], state="camera_lost"), NOW, Health.FAULTY),
    (beat(risk_published_at=(NOW - timedelta(days=3)).isoformat()), NOW, Health.STALE_LISTS),
    (beat(risk_version=None, risk_published_at=None), NOW, Health.STALE_LISTS),
    (beat(clock_trusted=False), NOW, Health.CLOCK_UNTRUSTED),
])
def test_device_health(heartbeat, received, expected):
    assert device_health("HN-1-1", heartbeat, received, NOW).health is expected


def test_a_checkpoint_is_as_healthy_as_its_worst_device():
    cp = Checkpoint("HN-1", "Chốt 1", "Hà Nội", devices=2)
    ok = device_health("HN-1-1", beat(), NOW, NOW)
    silent = device_health("HN-1-2", None, None, NOW)
    both = checkpoint_health(cp, [ok, silent])
    assert both.health is Health.NEVER_SEEN and both.problems == (Health.NEVER_SEEN,)
    assert checkpoint_health(cp, []).health is Health.NEVER_SEEN


def test_activity_is_counted_in_local_days_and_hours():
    rows = [HourCount("HN-1-1", datetime(2026, 12, 3, 1, tzinfo=UTC), "PASS", "ok", 5),       # 08:00 local
            HourCount("HN-1-1", datetime(2026, 12, 3, 1, tzinfo=UTC), "REFUSE", "risk_f0", 2),
            HourCount("HN-1-1", datetime(2026, 12, 2, 18, tzinfo=UTC), "CHECK", "no_rule", 1),  # 01:00 local today
            HourCount("HN-1-1", datetime(2026, 12, 2, 16, tzinfo=UTC), "PASS", "ok", 4),      # 23:00 yesterday
            HourCount("QN-1-1", datetime(2026, 12, 3, 1, tzinfo=UTC), "PASS", "ok", 100),
            HourCount("HN-1-1", datetime(2026, 11, 1, 1, tzinfo=UTC), "PASS", "ok", 50)]      # too old
    act = activity(rows, NOW, devices={"HN-1-1"})
    assert act.today.isoformat() == "2026-12-03" and LOCAL.utcoffset(NOW) == timedelta(hours=7)
    assert act.by_hour[8] == 7 and act.by_hour[1] == 1 and act.scans_today == 8
    assert act.refusals_today == 2 and act.reasons_today == {"risk_f0": 2, "no_rule": 1}
    assert dict(act.by_day)[act.today - timedelta(days=1)] == 4 and sum(n for _, n in act.by_day) == 12


def _contrast(hex_colour: str) -> float:
    def lum(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return (1.0 + 0.05) / (0.2126 * lum(r) + 0.7152 * lum(g) + 0.0722 * lum(b) + 0.05)


def test_badges_are_readable_and_every_word_is_translated():
    for colour in [*HEALTH_COLOUR.values(), *DECISION_COLOUR.values()]:
        assert _contrast(colour) >= 4.5, colour  # white text, WCAG AA
    assert set(TEXT["vi"]) == set(TEXT["en"])
    assert set(KIND_TEXT["vi"]) == set(KIND_TEXT["en"]) == {k.value for k in PassKind}
    assert all(set(HEALTH_TEXT[lang]) == set(Health) for lang in ("vi", "en"))
    assert reason_text(Reason.RISK_F0.value, "vi").startswith("Người nhiễm (F0)")
    assert reason_text("some_future_reason", "en") == "some_future_reason"


def test_one_pass_at_two_checkpoints_too_far_apart_is_a_sharing_alarm():
    from sync.server.fleet.sharing import distance_km, sharing_alarms
    from sync.server.registry import Registry, parse_checkpoints

    registry = Registry(parse_checkpoints(
        "checkpoint_id,name,province,latitude,longitude\n"
        "HN-017,Cầu Chương Dương,Hà Nội,21.0245,105.8603\n"
        "HN-018,Ngã ba Pháp Vân,Hà Nội,20.9520,105.8430\n"
        "QN-003,Cửa khẩu Móng Cái,Quảng Ninh,21.5247,107.9661\n"))
    assert 200 < distance_km(21.0245, 105.8603, 21.5247, 107.9661) < 240
    shared, driver = bytes(16), bytes([1] * 16)
    at = NOW.isoformat()
    scans = [(shared, "HN-017-1", at), (shared, "QN-003-1", (NOW + timedelta(minutes=20)).isoformat()),
             (driver, "HN-017-1", at), (driver, "HN-018-1", (NOW + timedelta(minutes=15)).isoformat()),
             (driver, "QN-003-1", (NOW + timedelta(hours=4)).isoformat())]  # a lorry driver: plausible
    alarms = sharing_alarms(scans, registry)
    assert len(alarms) == 1
    alarm = alarms[0]
    assert (alarm.first_checkpoint, alarm.second_checkpoint) == ("HN-017", "QN-003") and alarm.speed_kmh > 600
    # a device's wall time without an offset (a device's word, so anything printable) is read as UTC:
    # comparing it with the others' once raised TypeError, a 500 on the fleet page
    naive = (NOW + timedelta(minutes=20)).astimezone(UTC).replace(tzinfo=None).isoformat()
    scans[1] = (shared, "QN-003-1", naive)
    pairs = [(a.first_checkpoint, a.second_checkpoint) for a in sharing_alarms(scans, registry)]
    assert pairs == [("HN-017", "QN-003")]


def test_the_alarm_board_shows_the_last_result_while_a_newer_one_is_computed(tmp_path, server_x25519):
    """The first page waits for the alarms; later pages get the last result at once and, once it is
    older than the refresh interval, a background recomputation serves the pages after it."""
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge.scan.scanlog import ScanLog
    from edge.verdict import Decision, Verdict
    from edge.verdict import Reason as Why
    from sync.server.fleet.sharing import AlarmBoard
    from sync.server.ingest import ingest
    from sync.server.registry import Registry, parse_checkpoints
    from sync.server.storage import open_storage
    from sync.wire.sealed import HolderOpener

    registry = Registry(parse_checkpoints("checkpoint_id,name,province,latitude,longitude\n"
                                          "HN-017,Cầu Chương Dương,Hà Nội,21.0245,105.8603\n"
                                          "QN-003,Cửa khẩu Móng Cái,Quảng Ninh,21.5247,107.9661\n"))
    storage = open_storage(f"sqlite:///{tmp_path / 'server.sqlite'}", create=True)
    now = datetime.now(UTC)

    def scan(device_id: str, at: datetime) -> None:
        storage.enroll(device_id, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        log = ScanLog(tmp_path / f"{device_id}.sqlite", device_id=device_id, boot_id="b",
                      server_encryption_key=server_x25519.public_key())
        log.append(Verdict(Decision.PASS, Why.OK, format="CP1", kind="resident", holder_hash=bytes(16)),
                   wall_time=at, monotonic=1.0, clock_trusted=True, policy_version=1, risk_version=1)
        ingest(storage, HolderOpener(server_x25519), device_id, log.records())
        log.close()

    try:
        board = AlarmBoard(storage, lambda: registry, refresh_s=0.0)
        first_at, first = board.current(now)
        assert first == []
        scan("HN-017-1", now - timedelta(minutes=30))
        scan("QN-003-1", now - timedelta(minutes=10))   # 220 km in 20 minutes: one pass, two people
        at, shown = board.current(datetime.now(UTC))
        assert (at, shown) == (first_at, [])  # the stale result, at once; the new one is on its way
        deadline = time.monotonic() + 10
        while not shown and time.monotonic() < deadline:
            time.sleep(0.05)
            _at, shown = board.current(datetime.now(UTC))
        assert [(a.first_checkpoint, a.second_checkpoint) for a in shown] == [("HN-017", "QN-003")]
    finally:
        storage.close()
