"""The unit file: required settings, hardening, and a silent ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "checkpoint.service"
EXEC = "/opt/checkpoint/current/bin/checkpoint"
ANALYZE = shutil.which("systemd-analyze")


def settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_has_the_required_settings():
    s = settings(UNIT.read_text())
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert int(s["WatchdogSec"][0]) >= 30
    assert s["ExecStart"] == [f"{EXEC} run --config /etc/checkpoint/config.toml"]
    assert s["WorkingDirectory"] == ["/var/lib/checkpoint"] and s["StateDirectory"] == ["checkpoint"]
    assert set(s["SupplementaryGroups"][0].split()) >= {"gpio", "video"}
    assert s["DevicePolicy"] == ["closed"] and "PrivateDevices" not in s
    allowed = " ".join(s["DeviceAllow"])
    assert "char-video4linux" in allowed and "gpiochip" in allowed
    assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"]


def _verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    unit = tmp_path / "checkpoint.service"
    # ExecStart must exist for verify: point it at this checkout's entry point
    unit.write_text(text.replace(EXEC, str(Path(sys.executable).parent / "checkpoint")))
    return subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_prints_nothing(tmp_path):
    result = _verify(tmp_path, UNIT.read_text())
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_verify_check_catches_an_unknown_key(tmp_path):
    """Control: verify exits 0 on an unknown key, but prints; our check must see it."""
    result = _verify(tmp_path, UNIT.read_text().replace("[Service]\n", "[Service]\nWatchDogSec=5\n"))
    assert result.stdout + result.stderr != ""


def test_bench_measures_the_daemon_with_the_units_environment():
    from edge.devtools.bench.footprint import DAEMON_ENV

    assignments = {a.split("=", 1)[0]: a.split("=", 1)[1]
                   for line in settings(UNIT.read_text())["Environment"] for a in line.split()}
    assert DAEMON_ENV.items() <= assignments.items()


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_update_units_verify_silently(tmp_path):
    """The installer unit and the path unit that starts it when a release is staged."""
    folder = UNIT.parent
    service = (folder / "checkpoint-update.service").read_text()
    assert "update apply" in service and EXEC in service
    (tmp_path / "checkpoint-update.service").write_text(
        service.replace(EXEC, str(Path(sys.executable).parent / "checkpoint")))
    path_unit = (folder / "checkpoint-update.path").read_text()
    assert "PathChanged=/var/lib/checkpoint/updates/staged.cpenv" in path_unit
    (tmp_path / "checkpoint-update.path").write_text(path_unit)
    result = subprocess.run([ANALYZE, "verify", str(tmp_path / "checkpoint-update.path"),
                             str(tmp_path / "checkpoint-update.service")], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
