"""A full disk on a real (tiny tmpfs) filesystem: the lamp shows CHECK, nothing committed is lost,
and recording resumes once space is back."""

import contextlib
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge.config import parse_config
from edge.device.appliance import Appliance
from edge.devtools.synth import render_sequence
from edge.scan.camera.replay import ReplaySource
from edge.verdict import Decision
from sync.wire.keyfiles import save_public_key


@pytest.fixture
def tiny_fs(tmp_path: Path):
    mount_point = tmp_path / "sd"
    mount_point.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], check=True,
                       capture_output=True, timeout=20)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=20)


def _fill(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()
            os.fsync(fh.fileno())


def _run(appliance: Appliance, texts: list[str], seed: int) -> list:
    events: list = []
    appliance.daemon.on_decision = events.append
    appliance.daemon.source = ReplaySource(images=render_sequence(texts, (640, 480), seed=seed, idle_frames=2,
                                                                  hold_frames=3), fps=None)
    assert appliance.daemon.run() == 0
    return events


def test_full_disk_shows_check_and_loses_nothing(tiny_fs: Path, tmp_path: Path):
    save_public_key(tiny_fs / "keys/publisher_ed25519.pub.pem", Ed25519PrivateKey.generate().public_key())
    save_public_key(tiny_fs / "keys/server_x25519.pub.pem", X25519PrivateKey.generate().public_key())
    config = parse_config({"device": {"id": "T-DISK", "data_dir": str(tiny_fs)},
                           "camera": {"source": "replay", "path": str(tmp_path)},
                           "light": {"backend": "none"}})
    appliance = Appliance(config, source=ReplaySource(images=render_sequence(["x"], (64, 64)), fps=None))
    try:
        before = _run(appliance, ["CODE-A", "CODE-B"], seed=1)
        assert [e.recorded for e in before] == [True, True]

        _fill(tiny_fs / "filler")
        during = _run(appliance, ["CODE-C", "CODE-D"], seed=2)
        assert [(e.recorded, e.shown) for e in during] == [(False, Decision.CHECK)] * 2

        (tiny_fs / "filler").unlink()
        after = _run(appliance, ["CODE-E"], seed=3)
        assert [e.recorded for e in after] == [True]
        assert appliance.scanlog.verify_chain() == 3  # A, B and E: every shown-and-recorded decision
        assert [r["seq"] for r in appliance.scanlog.records()] == [1, 2, 3]
    finally:
        appliance.close()


def test_daemon_starts_on_a_full_disk_and_says_so(tiny_fs: Path, tmp_path: Path):
    """The card is full before the daemon starts: it starts anyway, shows CHECK and the disk fault,
    says "disk full" and what to do in its status, and records again once space is freed."""
    from edge.device.status import format_status
    from edge.scan.light import Fault

    save_public_key(tiny_fs / "keys/publisher_ed25519.pub.pem", Ed25519PrivateKey.generate().public_key())
    save_public_key(tiny_fs / "keys/server_x25519.pub.pem", X25519PrivateKey.generate().public_key())
    _fill(tiny_fs / "filler")
    config = parse_config({"device": {"id": "T-DISK", "data_dir": str(tiny_fs)},
                           "camera": {"source": "replay", "path": str(tmp_path)},
                           "status": {"path": str(tmp_path / "status.json")},
                           "light": {"backend": "none"}})
    appliance = Appliance(config, source=ReplaySource(images=render_sequence(["x"], (64, 64)), fps=None))
    try:
        assert not appliance.scanlog.available
        during = _run(appliance, ["CODE-A"], seed=1)
        assert [(e.recorded, e.shown) for e in during] == [(False, Decision.CHECK)]
        assert Fault.DISK_LOW in appliance.daemon.faults and appliance.daemon.errors == 1
        snapshot = appliance.daemon.snapshot()
        assert snapshot.device.disk.startswith("disk full") and "free space on the SD card" in snapshot.device.disk
        assert "DISK:             disk full" in format_status(snapshot)

        (tiny_fs / "filler").unlink()
        after = _run(appliance, ["CODE-B"], seed=2)
        assert [e.recorded for e in after] == [True]
        appliance.daemon._poll_health()
        assert Fault.DISK_LOW not in appliance.daemon.faults and appliance.daemon.snapshot().device.disk is None
        assert [r["seq"] for r in appliance.scanlog.records()] == [1]
    finally:
        appliance.close()


def test_the_servers_full_disk_answers_503_and_loses_nothing(tiny_fs: Path, tmp_path: Path, caplog):
    """The central server's SQLite database on a full filesystem: a push is refused with 503 and a
    retry (it was a 500 with no hint), the device keeps its records, and once space is back the same
    server process stores them all, once."""
    from conftest import append_samples
    from test_sync_push import assert_server_matches, make_client

    from edge.device.sync_client import SyncError
    from edge.scan.scanlog import ScanLog
    from sync.server.app import create_app
    from sync.server.enrollment import issue_token
    from sync.server.runner import ServerThread
    from sync.server.settings import init_data_dir

    settings = init_data_dir(tiny_fs / "server")
    log = ScanLog(tmp_path / "dev.sqlite", device_id="dev-1", boot_id="b",
                  server_encryption_key=settings.encryption_key.public_key())
    app = create_app(settings)
    with ServerThread(app) as server:
        storage = app.state.storage
        token = issue_token(storage, "dev-1")
        client = make_client(server.url, log, Ed25519PrivateKey.generate(), batch_size=500)
        client.enroll(token)
        append_samples(log, 5)
        assert client.push() == 5
        _fill(tiny_fs / "filler")
        append_samples(log, 1500, start=5)
        with pytest.raises(SyncError) as err:
            client.push()
        assert err.value.status == 503 and "retry later" in str(err.value), err.value
        assert "full" in caplog.text and "event=server_storage_error" in caplog.text  # the operator's log says so
        assert log.pending() == 1500 and storage.acked_seq("dev-1") == 5
        (tiny_fs / "filler").unlink()
        assert client.push() == 1500
        assert_server_matches(storage, log)
    log.close()
