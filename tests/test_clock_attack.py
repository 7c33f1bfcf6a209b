"""The clock attacks, through the real device: server on loopback, sync client, daemon, scan log, lamps.

The device syncs once with a real central server (signed server time and lists), goes offline,
and its wall clock is turned back through the clock's wall-time seam (the test machine's own clock
is not ours to set). Expired travel permits are then shown to the replay camera.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import pytest
import tomli_w
from conftest import COVERS, ID_KEY
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.config import load_config
from edge.device.appliance import Appliance, make_clock
from edge.device.status import StatusFile, format_status
from edge.devtools.synth import render_sequence
from edge.lists.policy import default_policy, sign_policy
from edge.passes.cp1 import issue_cp1
from edge.passes.credential import PassKind, Vaccination
from edge.passes.issuer import IssuerKey
from edge.passes.trust import build_trust_envelope
from edge.scan.clock import SystemClock
from edge.scan.light import Fault
from edge.verdict import Decision, Reason
from sync.server.app import create_app
from sync.server.enrollment import issue_token
from sync.server.publish.risk import RiskPublisher
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.server.storage import open_storage
from sync.wire.identifiers import holder_hash
from sync.wire.keyfiles import save_public_key
from sync.wire.risk.types import RiskStatus

DAY = 86400.0
NOW = datetime.now(UTC).replace(microsecond=0)


class WallClock:
    """The device's wall clock as the clock seam sees it: real time plus whatever someone set."""

    def __init__(self) -> None:
        self.shift_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift_s


def _expired_permits(issuer: IssuerKey, n: int) -> list[str]:
    """Travel permits that expired 10 days ago (valid on a clock 20 days behind)."""
    return [issue_cp1(issuer, PassKind.TRAVEL_PERMIT, holder_hash(f"00109900{i:04d}", ID_KEY),
                      issued_at=NOW - timedelta(days=40), expires_at=NOW - timedelta(days=10),
                      zones=("hn-zone-1",), vaccination=Vaccination(2, 2, date(2025, 12, 1))) for i in range(n)]


@pytest.fixture
def device(tmp_path: Path, server_x25519, publisher_key: Ed25519PrivateKey):
    """A device config, a central server publishing trust list, policy and risk list, and the issuer."""
    issuer = IssuerKey.generate("VN-HN-CDC", "EdDSA", not_before=NOW - timedelta(days=60))
    server_data = tmp_path / "server"
    (server_data / "published").mkdir(parents=True)
    (server_data / "published/trust.cpenv").write_bytes(
        build_trust_envelope([issuer.trusted_key()], publisher_key, 1))
    (server_data / "published/policy.cpenv").write_bytes(sign_policy(default_policy("hn-zone-1"), publisher_key))
    RiskPublisher(server_data / "risk", publisher_key, coverage=COVERS).publish(
        [(holder_hash("F0-PERSON", ID_KEY), RiskStatus.F0, None)])
    settings = ServerSettings(db_url=f"sqlite:///{server_data / 'db.sqlite'}", encryption_key=server_x25519,
                              publisher_key=publisher_key, data_dir=server_data)
    storage = open_storage(settings.db_url, create=True)
    token = issue_token(storage, "CLK-1")  # what provisioning puts in the device's bundle
    storage.close()

    data = tmp_path / "device"
    save_public_key(data / "keys/publisher_ed25519.pub.pem", publisher_key.public_key())
    save_public_key(data / "keys/server_x25519.pub.pem", server_x25519.public_key())
    texts = _expired_permits(issuer, 5)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(render_sequence(texts, (640, 480), seed=5, idle_frames=3, hold_frames=4)):
        cv2.imwrite(str(frames / f"{i:04d}.png"), image)
    server = ServerThread(create_app(settings)).start()
    config = {"device": {"id": "CLK-1", "groups": ["hn-zone-1"], "data_dir": str(data)},
              "camera": {"source": "replay", "path": str(frames), "fps": 100.0},
              "light": {"backend": "none"},
              "sync": {"server_url": server.url},
              "clock": {"rtc": "none", "ntp_synchronized_flag": str(tmp_path / "ntp-synchronized")}}
    (tmp_path / "config.toml").write_text(tomli_w.dumps(config))
    try:
        yield {"config": load_config(tmp_path / "config.toml"), "server": server, "texts": texts, "token": token,
               "server_data": server_data, "tmp": tmp_path}
    finally:
        server.stop()


def _device_clock(config, wall: WallClock, *, boot: str = "boot-1") -> SystemClock:
    """The clock ``make_clock`` builds from the config, with the wall-time seam exposed."""
    c = config.clock
    return SystemClock(state_path=config.resolve(c.state_path), timesync_flag=c.ntp_synchronized_flag,
                       jump_tolerance_s=c.jump_tolerance_s, wall=wall, boot=boot)


def _sync_once(appliance: Appliance, token: str) -> None:
    appliance.sync.enroll(token)
    result = appliance.sync.run_once()
    assert result.errors == [] and sorted(k for k, _ in result.installed) == ["policy", "risk", "trust"]


def test_clock_turned_back_offline_gives_no_green_to_expired_permits(device):
    """After a signed server time, the wall clock jumps back 20 days while offline (old code: PASS, clock_trusted)."""
    config, wall = device["config"], WallClock()
    events = []
    appliance = Appliance(config, clock=_device_clock(config, wall), on_decision=events.append)
    try:
        _sync_once(appliance, device["token"])
        assert appliance.clock.trusted()
        device["server"].stop()  # offline
        wall.shift_s = -20 * DAY
        assert appliance.run() == 0  # the real daemon over the replay camera (its sync thread finds no server)
        assert len(events) == len(device["texts"])
        assert all(e.shown != Decision.PASS for e in events)
        assert {(e.shown, e.verdict.reason) for e in events} == {(Decision.CHECK, Reason.CLOCK_UNTRUSTED)}
        records = appliance.scanlog.records()
        assert len(records) == len(events) and not any(r["clock_trusted"] for r in records)
        assert Fault.CLOCK_UNTRUSTED in appliance.daemon.faults  # the clock lamp pattern
        assert appliance.daemon.snapshot().clock_trusted is False
        # what the real daemon wrote to its status file tells the operator why
        report = format_status(StatusFile(config.resolve(config.status.path)).read())
        assert "clock trusted:    NO (the wall clock jumped" in report and "clock floor:" in report
    finally:
        appliance.close()


def test_a_signed_server_time_older_than_the_floor_is_refused_by_the_sync_client(device, publisher_key, caplog):
    """A risk list published (signed) two days ahead of the server's clock: its time is the floor."""
    config = device["config"]
    RiskPublisher(device["server_data"] / "risk", publisher_key).publish(
        [(holder_hash("F1-PERSON", ID_KEY), RiskStatus.F1, None)], published_at=NOW + timedelta(days=2))
    appliance = Appliance(config, clock=_device_clock(config, WallClock()))
    try:
        _sync_once(appliance, device["token"])  # server time now, then the risk list raises the floor to now + 2 days
        assert appliance.clock.floor == NOW + timedelta(days=2) and not appliance.clock.trusted()
        result = appliance.sync.run_once()
        assert any(err.startswith("time:") and "older than the newest signed time" in err for err in result.errors)
        assert not appliance.clock.trusted()
    finally:
        appliance.close()


def test_the_floor_survives_a_restart_and_a_past_ntp_answer_is_not_believed(device):
    """Real files: sync, power cut, reboot offline 20 days behind with an NTP answer from the past."""
    config, wall = device["config"], WallClock()
    appliance = Appliance(config, clock=_device_clock(config, wall))
    try:
        _sync_once(appliance, device["token"])
    finally:
        appliance.close()
    device["server"].stop()
    (device["tmp"] / "ntp-synchronized").touch()  # timesyncd believed an NTP server...
    wall.shift_s = -20 * DAY  # ...that answered 20 days in the past
    rebooted = Appliance(config, clock=_device_clock(config, wall, boot="boot-2"))
    try:
        verdict = rebooted.verifier.verify(device["texts"][0])
        assert (verdict.decision, verdict.reason) == (Decision.CHECK, Reason.CLOCK_UNTRUSTED)
        assert Fault.CLOCK_UNTRUSTED in set(rebooted._clock_fault())
    finally:
        rebooted.close()
    # the clock the device builds from its config reads the same floor file
    assert make_clock(config).floor >= NOW
    wall.shift_s = 0.0  # a right NTP answer is believed (it is not before the floor)
    assert _device_clock(config, wall, boot="boot-3").trusted()
