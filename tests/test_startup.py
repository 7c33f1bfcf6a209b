"""Start-up failures of ``checkpoint run``: one clear message with what to do, the fault on the lamps, no traceback.

Each case runs the real command in a child process, as systemd would, against real files: no pin
library (this machine has none, as a Pi without python3-lgpio), an unprovisioned data folder, a
picamera2 that is installed but fails to import (a package on the path raising what a numpy ABI
mismatch raises), and a picamera2 that sees no camera.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from gpiozero.pins.mock import MockFactory

from edge.config import load_config
from sync.wire.keyfiles import save_public_key

CHECKPOINT = [sys.executable, "-m", "edge.cli"]


def write_config(folder: Path, body: str, *, provisioned: bool) -> Path:
    """A device config in ``folder`` (data dir = folder); with ``provisioned`` the two pinned keys exist."""
    folder.mkdir(parents=True, exist_ok=True)
    if provisioned:
        save_public_key(folder / "keys/publisher_ed25519.pub.pem", Ed25519PrivateKey.generate().public_key())
        save_public_key(folder / "keys/server_x25519.pub.pem", X25519PrivateKey.generate().public_key())
    (folder / "frames").mkdir(exist_ok=True)
    config = folder / "config.toml"
    config.write_text(f'[device]\nid = "HN-CP-042"\ndata_dir = "{folder}"\n{body}', encoding="utf-8")
    return config


def run_daemon(config: Path, *extra: str, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``checkpoint run`` as a process; the timeout only stops a hang (the arm64 proof runs these emulated)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("GPIOZERO_PIN_FACTORY", "NOTIFY_SOCKET")}
    environment.update(env or {})
    return subprocess.run([*CHECKPOINT, "run", "--config", str(config), *extra], capture_output=True, text=True,
                          timeout=timeout, env=environment)


def assert_clear_failure(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    for phrase in phrases:
        assert phrase in output, output


def test_no_pin_library_names_the_fix_instead_of_bad_pin_factory(tmp_path):
    config = write_config(tmp_path, '[camera]\nsource = "replay"\npath = "frames"\n[light]\nbackend = "gpio"\n',
                          provisioned=True)
    result = run_daemon(config, "--fault-hold", "0")
    assert result.returncode == 1
    assert_clear_failure(result, "no usable GPIO pin library", "python3-lgpio", "lgpio")
    assert "BadPinFactory" not in result.stderr and "PinFactoryFallback" not in result.stderr


def test_unprovisioned_device_says_so_and_shows_the_fault_on_the_lamps(tmp_path):
    config = write_config(tmp_path, '[camera]\nsource = "replay"\npath = "frames"\n[light]\nbackend = "terminal"\n',
                          provisioned=False)
    started = time.monotonic()
    result = run_daemon(config, "--fault-hold", "0.5")
    assert result.returncode == 1 and time.monotonic() - started >= 0.5
    assert_clear_failure(result, "device HN-CP-042 is not provisioned", "What to do", "provisioning bundle")
    assert "[ fault  ] device_not_ready: Amber slow blink" in result.stdout


def test_unprovisioned_fault_blinks_the_amber_gpio_lamp(tmp_path):
    from edge.device.startup import StartupError, open_light, start_appliance
    from edge.scan.light import Fault

    config = load_config(write_config(tmp_path, '[light]\nbackend = "gpio"\npin_factory = "mock"\n',
                                      provisioned=False))
    light = open_light(config)
    amber = light.lamps["amber"].pin
    with pytest.raises(StartupError) as failure:
        start_appliance(config, light=light, hold_s=2.6)
    assert failure.value.fault is Fault.DEVICE_NOT_READY
    lit = [s.state for s in amber.states]
    assert lit.count(True) >= 2 and lit.count(False) >= 2, lit  # blinking, then off when the process ends
    assert isinstance(light.lamps["amber"].pin_factory, MockFactory)


def _fake_picamera2(folder: Path, body: str) -> dict[str, str]:
    """A ``picamera2`` package on PYTHONPATH with the given body (what apt's package does when broken)."""
    package = folder / "fakepkgs" / "picamera2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body, encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join([str(folder / "fakepkgs"), os.environ.get("PYTHONPATH", "")])}


CAMERA = ('[camera]\nsource = "picamera2"\nmax_reopen_attempts = 1\nreopen_backoff_s = 0.05\n'
          '[light]\nbackend = "terminal"\n')


def test_picamera2_failing_with_a_numpy_abi_error_is_a_clear_camera_fault(tmp_path):
    env = _fake_picamera2(tmp_path, 'raise ValueError("numpy.dtype size changed, may indicate binary '
                                    'incompatibility. Expected 96 from C header, got 88 from PyObject")\n')
    result = run_daemon(write_config(tmp_path, CAMERA, provisioned=True), env=env)
    assert result.returncode == 3
    assert_clear_failure(result, "picamera2_broken", "numpy", "bootstrap.sh", "camera_gave_up")
    assert "[ fault  ] camera_lost" in result.stdout


def test_no_camera_is_a_clear_camera_fault(tmp_path):
    env = _fake_picamera2(tmp_path, "class Picamera2:\n    @staticmethod\n    def global_camera_info():\n"
                                    "        return []\n")
    result = run_daemon(write_config(tmp_path, CAMERA, provisioned=True), env=env)
    assert result.returncode == 3
    assert_clear_failure(result, "no_camera", "check the ribbon cable", "camera_gave_up")
    assert "[ fault  ] camera_lost" in result.stdout


def test_unwritable_data_folder_is_a_clear_message(tmp_path):
    body = '[light]\nbackend = "terminal"\n[scanlog]\npath = "/proc/nope/scan.sqlite"\n'
    config = write_config(tmp_path / "dev", body, provisioned=True)
    result = run_daemon(config)
    assert result.returncode == 1
    assert_clear_failure(result, "What to do", "startup_failed")
