"""``checkpoint doctor`` on a real provisioned, enrolled and synced device (the demo's), then broken."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.config import load_config
from edge.device.appliance import Appliance
from edge.device.doctor import Outcome, check_camera, check_clock, check_lamps
from edge.device.status import StatusFile, StatusSnapshot
from edge.devtools.demo.world import Central, demo_now, make_travellers, provision_device, render_frames
from sync.server.app import create_app
from sync.server.runner import ServerThread

NO_CLOCK = ["--only", "camera", "--only", "lamps", "--only", "lists", "--only", "disk", "--only", "keys",
            "--only", "enrollment", "--only", "server"]


@pytest.fixture
def device(tmp_path: Path):
    """A device provisioned by the demo's world, enrolled and synced once with a live server."""
    now = demo_now()
    central = Central.create(tmp_path / "server")
    central.publish(now)
    render_frames(tmp_path / "frames", make_travellers(central, now)[:2])
    server = ServerThread(create_app(central.settings)).start()
    provision_device(tmp_path / "device", central, server.url, tmp_path / "frames")
    config_path = tmp_path / "device" / "config.toml"
    appliance = Appliance(load_config(config_path), light_stream=io.StringIO())
    appliance.sync.sync_until_done(deadline_s=30)
    appliance.close()
    yield config_path, server
    server.stop()


def doctor(config_path: Path, *args: str):
    return CliRunner().invoke(main, ["doctor", "--config", str(config_path), *args])


def test_healthy_device_passes_every_check(device):
    config_path, _ = device
    result = doctor(config_path, *NO_CLOCK)
    assert result.exit_code == 0, result.output
    for name in ("camera", "lamps", "lists", "disk", "keys", "enrollment", "server"):
        assert any(line.startswith(name) and " pass " in line for line in result.output.splitlines()), result.output
    assert "one 640x480 frame from replay" in result.output
    assert "7 passed or skipped, 0 failed" in result.output


def test_server_down_and_missing_key_fail_with_what_to_do(device):
    config_path, server = device
    server.stop()
    config = load_config(config_path)
    config.resolve(config.keys.device_key).unlink()
    result = doctor(config_path, *NO_CLOCK)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    server_line = next(i for i, line in enumerate(lines) if line.startswith("server"))
    assert "FAIL" in lines[server_line] and "check the network" in lines[server_line + 1]
    assert any(line.startswith("keys") and "FAIL" in line and "device key" in line for line in lines)
    assert "2 failed" in lines[-1]


def test_unprovisioned_device_fails_keys_lists_and_enrollment(tmp_path: Path):
    config_path = tmp_path / "config.toml"
    config_path.write_text(f'[device]\ndata_dir = "{tmp_path}"\n[sync]\nserver_url = "http://127.0.0.1:9"\n'
                           '[light]\nbackend = "none"\n[camera]\nsource = "replay"\npath = "nothing"\n')
    result = doctor(config_path)
    assert result.exit_code == 1
    failed = {line.split()[0] for line in result.output.splitlines() if "  FAIL  " in line}
    assert {"camera", "lists", "keys", "enrollment", "server"} <= failed
    assert "Traceback" not in result.output


def test_running_daemon_answers_for_camera_lamps_and_clock(tmp_path: Path):
    """While the daemon holds camera and pins, doctor reads its fresh status instead of opening them."""
    config_path = tmp_path / "config.toml"
    config_path.write_text(f'[device]\ndata_dir = "{tmp_path}"\n[light]\nbackend = "terminal"\n')  # picamera2
    config = load_config(config_path)
    snapshot = StatusSnapshot(state="running", updated_at=datetime.now(UTC).isoformat(), source="picamera2",
                              last_frame_age_s=0.2, clock_trusted=True, faults=("risk_stale",))
    StatusFile(config.resolve(config.status.path)).write(snapshot)
    assert check_camera(config).outcome is Outcome.PASS
    lamps = check_lamps(config)
    assert lamps.outcome is Outcome.SKIP and "risk_stale" in lamps.detail
    assert check_clock(config).outcome is Outcome.PASS
    StatusFile(config.resolve(config.status.path)).write(replace(snapshot, last_frame_age_s=30.0))
    assert check_camera(config).outcome is Outcome.FAIL
