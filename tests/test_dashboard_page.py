"""The fleet dashboard in headless Chromium, after a real device pushed its scan log."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import cv2
import pytest
from browser import chromium, needs_chromium
from conftest import append_samples
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.device.sync_client import SyncClient
from edge.lists.policy import default_policy, sign_policy
from edge.scan.scanlog import ScanLog
from sync.server.app import create_app
from sync.server.publish.risk import RiskPublisher
from sync.server.runner import ServerThread
from sync.server.settings import ServerSettings
from sync.wire.identifiers import holder_hash
from sync.wire.risk.types import RiskStatus


@pytest.mark.chromium
@needs_chromium
def test_dashboard_shows_the_fleet_and_the_published_lists(tmp_path: Path):
    token = secrets.token_urlsafe(16)
    settings = ServerSettings.from_data_dir(tmp_path / "server", enroll_token=token)
    (tmp_path / "server/published").mkdir()
    (tmp_path / "server/published/policy.cpenv").write_bytes(
        sign_policy(default_policy(version=4), settings.publisher_key))
    RiskPublisher(tmp_path / "server/risk", settings.publisher_key).publish(
        [(holder_hash("X"), RiskStatus.F0, None), (holder_hash("Y"), RiskStatus.F1, None)],
        published_at=datetime(2026, 11, 1, tzinfo=UTC))

    log = ScanLog(tmp_path / "device/scanlog.sqlite", device_id="HN-CP-007", boot_id="b",
                  server_encryption_key=settings.encryption_key.public_key())
    append_samples(log, 5)
    with ServerThread(create_app(settings)) as server:
        client = SyncClient(server.url, log, Ed25519PrivateKey.generate(), timeout_s=5)
        client.enroll(token)
        assert client.push() == 5
        dom = chromium(server.url + "/", tmp_path, "--dump-dom").stdout
        shot = tmp_path / "dashboard.png"
        chromium(server.url + "/", tmp_path, f"--screenshot={shot}", "--window-size=1000,600")
    log.close()

    assert "HN-CP-007" in dom and "1 devices, 5 records, 0 with gaps" in dom
    assert "<td>policy</td><td>4</td>" in dom
    assert "<td>risk</td><td>1</td><td>2 entries, published 2026-11-01T00:00:00+00:00</td>" in dom
    assert "<td>trust</td><td>-</td>" in dom  # nothing published: said, not hidden
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (600, 1000)
    assert (image < 128).mean() > 0.01, "the page rendered text"
