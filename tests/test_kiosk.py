"""The kiosk set-up: screen and kiosk units verified by systemd-analyze, the installer's syntax,
and ``checkpoint screen`` serving the page as the unit runs it (a real process, SIGTERM to stop)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_systemd import settings

ROOT = Path(__file__).resolve().parents[1]
SCREEN_UNIT = ROOT / "systemd" / "checkpoint-screen.service"
KIOSK_UNIT = ROOT / "systemd" / "checkpoint-kiosk.service"
INSTALLER = ROOT / "firmware_config" / "kiosk" / "install-kiosk.sh"
EXEC = "/opt/checkpoint/.venv/bin/checkpoint"
ANALYZE = shutil.which("systemd-analyze")


def _verify(tmp_path: Path, unit: Path, text: str) -> subprocess.CompletedProcess:
    # ExecStart must exist for verify: this checkout's entry point, and a stand-in for cage
    path = tmp_path / unit.name
    path.write_text(text.replace(EXEC, str(Path(sys.executable).parent / "checkpoint"))
                    .replace("/usr/bin/cage", "/usr/bin/env"))
    return subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60)


def test_screen_unit_runs_the_page_server_unprivileged_on_loopback():
    s = settings(SCREEN_UNIT.read_text())
    assert s["ExecStart"] == [f"{EXEC} screen --config /etc/checkpoint/config.toml"]
    assert s["User"] == ["checkpoint"] and s["Restart"] == ["always"]
    assert s["IPAddressDeny"] == ["any"] and s["IPAddressAllow"] == ["localhost"]
    assert s["NoNewPrivileges"] == ["yes"] and s["PrivateDevices"] == ["yes"]


def test_kiosk_unit_is_cage_and_chromium_on_tty1_pointing_at_the_screen():
    text = KIOSK_UNIT.read_text()
    s = settings(text)
    assert s["User"] == ["checkpoint-kiosk"] and s["PAMName"] == ["login"] and s["TTYPath"] == ["/dev/tty1"]
    assert "getty@tty1.service" in s["Conflicts"][0] and "checkpoint-screen.service" in s["Wants"][0]
    command = " ".join(line.strip(" \\") for line in text.split("ExecStart=", 1)[1].splitlines()[:4])
    assert command.startswith("/usr/bin/cage -d -s -- /usr/bin/chromium --kiosk")
    assert command.endswith("http://127.0.0.1:8088/")  # the port `checkpoint screen` uses by default
    assert s["WantedBy"] == ["graphical.target"]


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", [SCREEN_UNIT, KIOSK_UNIT], ids=lambda u: u.name)
def test_systemd_analyze_verify_prints_nothing(tmp_path, unit):
    result = _verify(tmp_path, unit, unit.read_text())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_verify_check_catches_a_typo_in_the_kiosk_unit(tmp_path):
    result = _verify(tmp_path, KIOSK_UNIT, KIOSK_UNIT.read_text().replace("TTYPath=", "TTYpath="))
    assert result.stdout + result.stderr != ""


def test_installer_is_valid_bash_and_installs_both_units():
    subprocess.run(["bash", "-n", str(INSTALLER)], check=True, timeout=30)
    text = INSTALLER.read_text()
    assert "cage" in text and "chromium" in text
    assert "systemctl enable checkpoint-screen.service checkpoint-kiosk.service" in text
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(INSTALLER)], check=True, timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_checkpoint_screen_serves_not_working_without_a_daemon_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'[device]\ndata_dir = "{tmp_path}"\ncheckpoint = "hn-cau-giay"\n'
                      f'[status]\npath = "run/status.json"\nstaff_screen_port = {port}\n')
    proc = subprocess.Popen([str(Path(sys.executable).parent / "checkpoint"), "screen", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/screen.json", timeout=2) as r:
                    answer = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.1)
        assert answer["mode"] == "not_working" and answer["checkpoint"] == "hn-cau-giay"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
