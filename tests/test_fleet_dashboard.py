"""The commanders' fleet view end to end: a registry loaded from checkpoints.csv, simulated devices
that send real heartbeats and push real scan records over loopback, a viewer logged in, the pages
rendered by headless Chromium (screenshots kept in the test's folder and looked at)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import pytest
import requests
from browser import chromium, needs_chromium
from click.testing import CliRunner
from conftest import append_samples
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cli import main
from edge.device.health import build_heartbeat
from edge.device.status import DeviceStatus, StatusSnapshot
from edge.device.sync_client import SyncClient
from edge.scan.scanlog import ScanLog
from sync.server.accounts import add_user
from sync.server.app import create_app
from sync.server.enrollment import issue_token
from sync.server.runner import ServerThread
from sync.server.settings import init_data_dir
from sync.server.storage import open_storage

CHECKPOINTS = """checkpoint_id,name,province,district,zone,latitude,longitude,devices
HN-017,Cầu Chương Dương,Hà Nội,Hoàn Kiếm,zone-1,21.0245,105.8603,1
HN-018,Ngã ba Pháp Vân,Hà Nội,Hoàng Mai,zone-2,20.9520,105.8430,1
QN-003,Cửa khẩu Móng Cái,Quảng Ninh,Móng Cái,border,21.5247,107.9661,1
"""


def _device(tmp_path: Path, settings, device_id: str, samples: int, **status) -> tuple[SyncClient, ScanLog]:
    log = ScanLog(tmp_path / device_id / "scanlog.sqlite", device_id=device_id, boot_id="b",
                  server_encryption_key=settings.encryption_key.public_key())
    append_samples(log, samples, at=datetime.now(UTC))
    now = datetime.now(UTC)
    snapshot = StatusSnapshot(state="running", updated_at=now.isoformat(timespec="seconds"), frames=100,
                              last_frame_age_s=0.1, decisions=samples, clock_trusted=True,
                              device=DeviceStatus(device_id=device_id, policy_version=2, risk_version=5,
                                                  risk_published_at=now.isoformat(), unsynced_records=samples))
    snapshot = replace(snapshot, **status)

    def heartbeat():
        return build_heartbeat(snapshot, trust_version=3, data_dir=tmp_path)

    return SyncClient("", log, Ed25519PrivateKey.generate(), timeout_s=5, heartbeat=heartbeat), log


@pytest.mark.chromium
@needs_chromium
def test_fleet_view_and_checkpoint_page_after_real_devices_synced(tmp_path: Path):
    settings = init_data_dir(tmp_path / "server")
    settings.secure_cookies = False  # plain HTTP on loopback
    csv_path = tmp_path / "checkpoints.csv"
    csv_path.write_text(CHECKPOINTS, encoding="utf-8")
    loaded = CliRunner().invoke(main, ["server", "--data-dir", str(settings.data_dir), "registry", str(csv_path)])
    assert loaded.exit_code == 0, loaded.output
    storage = open_storage(settings.db_url)
    tokens = {d: issue_token(storage, d) for d in ("HN-017-1", "HN-018-1")}
    add_user(storage, "viewer1", "correct horse battery", "viewer")
    storage.close()

    working, log1 = _device(tmp_path, settings, "HN-017-1", 12)
    faulty, log2 = _device(tmp_path, settings, "HN-018-1", 3, state="camera_lost", faults=("camera_lost",),
                           clock_trusted=False)
    with ServerThread(create_app(settings)) as server:
        for client in (working, faulty):
            client.server_url = server.url
            client.enroll(tokens[client.device_id])
            assert client.run_once().pushed > 0  # heartbeat, push, downloads: one real cycle
        session = requests.Session()
        assert session.get(server.url + "/fleet", timeout=10).url.endswith("/login")  # needs a login
        session.post(server.url + "/login", data={"username": "viewer1", "password": "correct horse battery"},
                     timeout=10)
        fleet_vi = session.get(server.url + "/fleet", timeout=10).text
        fleet_en = session.get(server.url + "/fleet?lang=en&sort=name", timeout=10).text
        only_border = session.get(server.url + "/fleet?lang=en&zone=border", timeout=10).text
        page = session.get(server.url + "/checkpoints/HN-017?lang=en", timeout=10).text
        shots = {}
        for name, html in (("fleet-vi", fleet_vi), ("checkpoint-en", page)):
            (tmp_path / f"{name}.html").write_text(html, encoding="utf-8")
            shots[name] = tmp_path / f"{name}.png"
            chromium((tmp_path / f"{name}.html").as_uri(), tmp_path, f"--screenshot={shots[name]}",
                     "--window-size=1280,1000")
    log1.close()
    log2.close()

    # Vietnamese by default, names and places from the registry, health from the heartbeats
    assert "Các chốt kiểm soát" in fleet_vi and "Cầu Chương Dương" in fleet_vi and "Hoàn Kiếm" in fleet_vi
    assert "Hoạt động tốt" in fleet_vi and "Có lỗi" in fleet_vi and "Chưa từng liên lạc" in fleet_vi
    assert "Asia/Ho_Chi_Minh" in fleet_vi and "<svg" in fleet_vi  # local time, charts inline (no CDN)
    assert "http" not in fleet_vi.split("<svg", 1)[1].split("</svg>", 1)[0]
    # English, filters: the never-seen border checkpoint alone
    assert "Never seen" in fleet_en and "Faulty" in fleet_en
    border_table = only_border.split("<form", 1)[1]
    assert "Cửa khẩu Móng Cái" in border_table and "Cầu Chương Dương" not in border_table
    # the simulated devices hold the same sample passes: one pass at two checkpoints 8 km apart within
    # seconds is a pass-sharing alarm (places and times only)
    assert "Possible pass sharing" in fleet_en and "Nghi dùng chung thẻ" in fleet_vi
    # the checkpoint page: its device's health and recent decisions, without identities
    assert "HN-017-1" in page and "Working" in page and "Close contact (F1): refuse" in page
    assert "holder" not in page.lower()
    for name, shot in shots.items():
        image = cv2.imread(str(shot))
        assert image is not None and (image < 128).mean() > 0.01, name
        shutil.copy(shot, Path("/tmp") / f"checkpoint-{name}.png")
