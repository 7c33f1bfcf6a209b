"""The fleet dashboard in headless Chromium, after a real device pushed its scan log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import cv2
import pytest
import requests
from browser import chromium, needs_chromium
from conftest import COVERS, ID_KEY, append_samples
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.device.sync_client import SyncClient
from edge.lists.policy import default_policy, sign_policy
from edge.scan.scanlog import ScanLog
from sync.server.accounts import add_user
from sync.server.app import create_app
from sync.server.enrollment import issue_token
from sync.server.publish.risk import RiskPublisher
from sync.server.runner import ServerThread
from sync.server.settings import init_data_dir
from sync.server.storage import open_storage
from sync.wire.identifiers import holder_hash
from sync.wire.risk.types import RiskStatus


@pytest.mark.chromium
@needs_chromium
def test_dashboard_shows_the_fleet_and_the_published_lists(tmp_path: Path):
    settings = init_data_dir(tmp_path / "server")
    settings.secure_cookies = False  # plain HTTP on loopback
    storage = open_storage(settings.db_url)
    token = issue_token(storage, "HN-CP-007")
    add_user(storage, "viewer1", "correct horse battery", "viewer")
    storage.close()
    (tmp_path / "server/published").mkdir()
    (tmp_path / "server/published/policy.cpenv").write_bytes(
        sign_policy(default_policy(version=4), settings.publisher_key))
    RiskPublisher(tmp_path / "server/risk", settings.publisher_key, coverage=COVERS).publish(
        [(holder_hash("X", ID_KEY), RiskStatus.F0, None), (holder_hash("Y", ID_KEY), RiskStatus.F1, None)],
        published_at=datetime(2026, 11, 1, tzinfo=UTC))

    log = ScanLog(tmp_path / "device/scanlog.sqlite", device_id="HN-CP-007", boot_id="b",
                  server_encryption_key=settings.encryption_key.public_key())
    append_samples(log, 5)
    with ServerThread(create_app(settings)) as server:
        client = SyncClient(server.url, log, Ed25519PrivateKey.generate(), timeout_s=5)
        client.enroll(token)
        assert client.push() == 5
        assert "Log in" in chromium(server.url + "/", tmp_path, "--dump-dom").stdout  # no session: the login page
        session = requests.Session()
        login = session.post(server.url + "/login", data={"username": "viewer1", "password": "correct horse battery"},
                             timeout=10)
        assert login.status_code == 200 and login.url == server.url + "/"
        dom = login.text
        page = tmp_path / "dashboard.html"  # the page as served to the logged-in viewer, rendered by Chromium
        page.write_text(dom, encoding="utf-8")
        shot = tmp_path / "dashboard.png"
        chromium(page.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1000,600")
    log.close()
    assert "Revoke" not in dom, "a viewer gets no operator buttons"

    assert "HN-CP-007" in dom and "1 devices, 5 records, 0 with gaps" in dom
    assert "<td>policy</td><td>4</td>" in dom
    assert "<td>risk</td><td>1</td><td>2 entries, published 2026-11-01T00:00:00+00:00</td>" in dom
    assert "<td>trust</td><td>-</td>" in dom  # nothing published: said, not hidden
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (600, 1000)
    assert (image < 128).mean() > 0.01, "the page rendered text"
