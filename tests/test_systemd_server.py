"""The server's units: required settings, a silent ``systemd-analyze verify``, a low exposure score,
and the server really running under the write-xor-execute rule its unit imposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_systemd import settings

from edge.devtools.server_procs import free_port, new_server_data_dir, raw_public_key
from sync.server.storage import open_storage
from sync.wire.protocol import HEADER_DEVICE, HEADER_SIGNATURE, b64, request_signing_bytes

ROOT = Path(__file__).resolve().parents[1]
SERVER_UNIT = ROOT / "systemd" / "checkpoint-server@.service"
RETENTION_UNIT = ROOT / "systemd" / "checkpoint-server-retention.service"
TIMER = ROOT / "systemd" / "checkpoint-server-retention.timer"
EXEC = "/opt/checkpoint/.venv/bin/checkpoint"
ANALYZE = shutil.which("systemd-analyze")
#: systemd-analyze security's exposure (0 = locked down, 10 = unprotected) must stay at or below this
MAX_EXPOSURE = 1.5


def test_server_unit_has_the_required_settings():
    s = settings(SERVER_UNIT.read_text())
    assert s["ExecStart"] == [f"{EXEC} server --data-dir /var/lib/checkpoint-server --db ${{CHECKPOINT_DB}} "
                              "--host 127.0.0.1 --port %i"]
    assert s["User"] == ["checkpoint-server"] and s["Restart"] == ["on-failure"]
    assert s["StateDirectoryMode"] == ["0700"] and s["UMask"] == ["0077"]  # owner-only data, whatever creates it
    assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"] and s["PrivateDevices"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""] and s["MemoryDenyWriteExecute"] == ["yes"]
    r = settings(RETENTION_UNIT.read_text())
    assert r["Type"] == ["oneshot"] and "retention" in r["ExecStart"][0]
    assert settings(TIMER.read_text())["Persistent"] == ["true"]


def _install(tmp_path: Path, unit: Path, name: str, text: str | None = None) -> Path:
    """A copy whose ExecStart exists on this machine (verify checks it)."""
    path = tmp_path / name
    path.write_text((text or unit.read_text()).replace(EXEC, str(Path(sys.executable).parent / "checkpoint")))
    return path


def _verify(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, "verify", *map(str, paths)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_prints_nothing_for_the_server_units(tmp_path):
    paths = [_install(tmp_path, SERVER_UNIT, "checkpoint-server@8081.service"),
             _install(tmp_path, RETENTION_UNIT, RETENTION_UNIT.name), _install(tmp_path, TIMER, TIMER.name)]
    result = _verify(*paths)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_verify_check_catches_a_misspelt_hardening_key(tmp_path):
    """Control: verify exits 0 on an unknown key, but prints; the check above must see it."""
    bad = SERVER_UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    result = _verify(_install(tmp_path, SERVER_UNIT, "checkpoint-server@8081.service", bad))
    assert result.stdout + result.stderr != ""


def _exposure(path: Path) -> float:
    result = subprocess.run([ANALYZE, "security", "--offline=yes", str(path)], capture_output=True, text=True,
                            timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    return float(found[1])


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_exposure_score_of_the_server_units(tmp_path):
    server = _exposure(_install(tmp_path, SERVER_UNIT, "checkpoint-server@8081.service"))
    retention = _exposure(_install(tmp_path, RETENTION_UNIT, RETENTION_UNIT.name))
    assert server <= MAX_EXPOSURE and retention <= MAX_EXPOSURE
    # control: the same unit without its hardening scores far worse, so the score measures something
    bare = "\n".join(line for line in SERVER_UNIT.read_text().splitlines()
                     if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability",
                                             "NoNewPrivileges", "MemoryDeny", "Lock", "IPAddress")))
    assert _exposure(_install(tmp_path, SERVER_UNIT, "bare@8081.service", bare)) > server + 4


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def _mdwe_supported() -> bool:
    probe = "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0)"
    return subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0


@pytest.mark.skipif(not _mdwe_supported(), reason="the kernel has no PR_SET_MDWE (Linux < 6.3)")
def test_server_works_under_memory_deny_write_execute(tmp_path):
    """MemoryDenyWriteExecute=yes forbids writable+executable memory; the kernel's PR_SET_MDWE is the
    same rule. Run the real server under it, prove the rule holds there, and push through it."""
    data = tmp_path / "server-data"
    launcher = tmp_path / "mdwe.py"
    launcher.write_text(
        "import ctypes, os, sys\n"
        f"assert ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n")
    wx = subprocess.run([sys.executable, str(launcher), "-c", "import mmap; mmap.mmap(-1, 4096, "
                         "prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"], capture_output=True, text=True)
    assert wx.returncode != 0 and "PermissionError" in wx.stderr  # the rule is in force after exec
    settings = new_server_data_dir(data)
    device = Ed25519PrivateKey.generate()
    storage = open_storage(settings.db_url)
    storage.enroll("d1", raw_public_key(device))
    storage.close()
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(launcher), "-m", "edge.cli", "server", "--data-dir", str(data),
                             "--port", str(port)], stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/v1/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        body = json.dumps({"device_id": "d1", "records": []}).encode()
        signature = b64(device.sign(request_signing_bytes("POST", "/v1/push", body)))
        pushed = requests.post(url + "/v1/push", data=body, timeout=5,
                               headers={HEADER_DEVICE: "d1", HEADER_SIGNATURE: signature})
        assert pushed.status_code == 200, pushed.text  # signature checked, database read, answer signed off
        assert requests.get(url + "/metrics", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)
    assert b"Traceback" not in proc.stderr.read()
