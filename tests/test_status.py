"""Status file (atomic JSON) and ``checkpoint status``."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from edge.camera.replay import ReplaySource
from edge.camera.synth import Distortion, render_sequence
from edge.cli import main
from edge.clock import FixedClock
from edge.daemon import Daemon
from edge.debounce import Debouncer
from edge.decode import Decoder
from edge.light import NullLight
from edge.notify import Notifier
from edge.status import StatusFile, format_status
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
    status.write({"state": "running", "n": 1})
    status.write({"state": "running", "n": 2})
    assert status.read() == {"state": "running", "n": 2}
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
                    status_extra=lambda: {"risk_list_version": 7, "risk_list_age_s": 3600.0,
                                          "unsynced_records": 12})
    assert daemon.run() == 0
    data = status.read()
    assert data["state"] == "stopped" and data["decisions"] == 1 and data["frames"] == len(frames)
    assert data["last_verdicts"][0]["verdict"] == "PASS" and data["clock_trusted"] is False

    result = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "clock trusted:    NO" in result.output
    assert "risk list:        version 7, published 60 min ago" in result.output
    assert "unsynced records: 12" in result.output
    assert "PASS" in result.output

    as_json = CliRunner().invoke(main, ["status", "--config", str(config), "--json"])
    assert json.loads(as_json.output)["unsynced_records"] == 12


def test_status_missing_stale_and_corrupt(tmp_path):
    config = write_config(tmp_path)
    missing = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert missing.exit_code == 1 and "has not run yet" in missing.output
    path = tmp_path / "run" / "status.json"
    StatusFile(path).write({"state": "running", "faults": ["camera_lost"]})
    old = time.time() - 600
    os.utime(path, (old, old))
    stale = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert stale.exit_code == 2 and "is the daemon running" in stale.output
    assert "faults:           camera_lost" in stale.output
    path.write_text("{half")
    corrupt = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert corrupt.exit_code == 1 and "not valid JSON" in corrupt.output
    bad = CliRunner().invoke(main, ["status", "--config", str(tmp_path / "nope.toml")])
    assert bad.exit_code == 1 and "config file not found" in bad.output


def test_format_status_minimal():
    text = format_status({})
    assert "state:            ?" in text and "last frame:       never" in text
