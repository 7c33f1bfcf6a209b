"""Status file (atomic JSON) and ``checkpoint status``."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from edge.cli import main
from edge.device.daemon import Daemon
from edge.device.notify import Notifier
from edge.device.status import DeviceStatus, StatusFile, StatusSnapshot, format_status
from edge.devtools.synth import Distortion, render_sequence
from edge.scan.camera.replay import ReplaySource
from edge.scan.clock import FixedClock
from edge.scan.debounce import Debouncer
from edge.scan.decode import Decoder
from edge.scan.light import NullLight
from edge.verdict import Decision, Reason, Verdict


class PassAll:
    def verify(self, text: str) -> Verdict:
        return Verdict(Decision.PASS, Reason.OK, format="CP1", kind="test")


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[device]\ndata_dir = "{tmp_path}"\n[status]\npath = "run/status.json"\n')
    return config


def test_status_file_is_replaced_atomically(tmp_path):
    status = StatusFile(tmp_path / "sub" / "status.json")
    status.write(StatusSnapshot(state="running", updated_at="2026-05-01T08:00:00+00:00", frames=1))
    second = StatusSnapshot(state="running", updated_at="2026-05-01T08:00:01+00:00", frames=2)
    status.write(second)
    assert status.read() == second
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["status.json"]  # no temp files left
    assert status.age_s() < 5


def test_daemon_keeps_status_current_and_cli_prints_it(tmp_path):
    config = write_config(tmp_path)
    status = StatusFile(tmp_path / "run" / "status.json")
    frames = render_sequence(["CP1:A"], (320, 240), 1, idle_frames=1, hold_frames=2,
                             distortion=Distortion(code_fraction=0.8))
    clock = FixedClock(datetime(2026, 5, 1, 8, 0), trusted=False)
    daemon = Daemon(source=ReplaySource(images=frames, fps=None), decoder=Decoder(),
                    debouncer=Debouncer(5), verifier=PassAll(), recorder=lambda v, t: None,
                    light=NullLight(), clock=clock, status_writer=status.write, notifier=Notifier(""),
                    status_extra=lambda: DeviceStatus(device_id="HN-CP-001", risk_version=7,
                                                      risk_published_at="2026-05-01T07:00:00+00:00",
                                                      unsynced_records=12))
    assert daemon.run() == 0
    data = status.read()
    assert data.state == "stopped" and data.decisions == 1 and data.frames == len(frames)
    assert data.last_verdicts[0].verdict == "PASS" and data.clock_trusted is False

    result = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "clock trusted:    NO" in result.output
    assert "risk list:        version 7, published 60 min ago" in result.output
    assert "unsynced records: 12" in result.output
    assert "PASS" in result.output

    as_json = CliRunner().invoke(main, ["status", "--config", str(config), "--json"])
    assert json.loads(as_json.output)["device"]["unsynced_records"] == 12


def test_status_missing_stale_and_corrupt(tmp_path):
    config = write_config(tmp_path)
    missing = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert missing.exit_code == 1 and "has not run yet" in missing.output
    path = tmp_path / "run" / "status.json"
    StatusFile(path).write(StatusSnapshot(state="running", updated_at="2026-05-01T08:00:00+00:00",
                                          faults=("camera_lost",)))
    old = time.time() - 600
    os.utime(path, (old, old))
    stale = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert stale.exit_code == 2 and "is the daemon running" in stale.output
    assert "faults:           camera_lost" in stale.output
    path.write_text("{half")
    corrupt = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert corrupt.exit_code == 1 and "not a status snapshot" in corrupt.output
    bad = CliRunner().invoke(main, ["status", "--config", str(tmp_path / "nope.toml")])
    assert bad.exit_code == 1 and "config file not found" in bad.output


def test_format_status_minimal():
    text = format_status(StatusSnapshot(state="starting", updated_at="2026-05-01T08:00:00+00:00"))
    assert "state:            starting" in text and "last frame:       never" in text
    assert "risk list:        none installed" in text
