"""The device install carries only what the device runs; the picamera2-like path needs no OpenCV."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.devtools.bench.footprint import installed_closure
from edge.devtools.synth import Distortion, render_sequence
from edge.scan.greyimage import GreyImageError, area_downscale, bgr_to_grey, gaussian_blur, read_pgm, write_pgm

ROOT = Path(__file__).resolve().parents[1]
SERVER_OR_DEMO = {"fastapi", "uvicorn", "psycopg", "opencv-python-headless", "segno", "starlette"}


def test_device_dependencies_exclude_server_opencv_and_tools():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("[")[0].split(";")[0].strip().lower() for dep in project["dependencies"]}
    assert not names & SERVER_OR_DEMO
    extras = project["optional-dependencies"]
    assert {"opencv", "server", "tools", "demo", "dev"} <= set(extras)
    assert any(d.startswith("opencv-python-headless") for d in extras["opencv"])


def test_installed_device_closure_has_no_server_or_opencv_package():
    """Follows the installed distributions' own metadata, as pip would resolve a device install."""
    device = set(installed_closure())
    assert "checkpoint-appliance" in device and "numpy" in device and "zxing-cpp" in device
    assert not device & SERVER_OR_DEMO
    assert "opencv-python-headless" in set(installed_closure({"opencv"}))
    assert {"fastapi", "uvicorn"} <= set(installed_closure({"demo"}))


def test_daemon_decodes_raw_grey_frames_with_opencv_unimportable(tmp_path):
    """The picamera2 path as a child process: any import of cv2 is recorded and refused."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from sync.wire.keyfiles import save_public_key

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(render_sequence(["CP1:NOT-A-REAL-PASS"], (640, 480), seed=2, idle_frames=2,
                                              hold_frames=4, distortion=Distortion(code_fraction=0.8))):
        write_pgm(frames / f"{i:03d}.pgm", image)
    save_public_key(tmp_path / "keys/publisher_ed25519.pub.pem", Ed25519PrivateKey.generate().public_key())
    save_public_key(tmp_path / "keys/server_x25519.pub.pem", X25519PrivateKey.generate().public_key())
    config = tmp_path / "config.toml"
    config.write_text(f'[device]\ndata_dir = "{tmp_path}"\n[camera]\nsource = "replay"\npath = "frames"\n'
                      'fps = 50\n[light]\nbackend = "terminal"\n')
    blocker = tmp_path / "blocker" / "cv2"
    blocker.mkdir(parents=True)
    marker = tmp_path / "cv2-imported"
    (blocker / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('x')\nraise ImportError('no OpenCV')\n")
    path = os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("NOTIFY_SOCKET", None)
    result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[ CHECK  ]" in result.stdout  # decoded and decided (no lists installed: amber, device not ready)
    assert not marker.exists(), "the scan path imported OpenCV"


def test_replaying_png_without_opencv_says_what_to_install(tmp_path):
    from edge.scan.camera import CameraError
    from edge.scan.camera.replay import ReplaySource

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    source = ReplaySource(tmp_path, fps=None)
    source.open()
    saved = sys.modules.get("cv2")
    sys.modules["cv2"] = None  # type: ignore[assignment]  # makes `import cv2` raise ImportError
    try:
        with pytest.raises(CameraError, match=r"opencv extra"):
            source.read(0.1)
    finally:
        sys.modules["cv2"] = saved


def test_numpy_image_steps_match_opencv():
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (97, 131), dtype=np.uint8)
    assert np.abs(gaussian_blur(grey).astype(int) - cv2.GaussianBlur(grey, (0, 0), 0.7)).max() <= 1
    bgr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert np.abs(bgr_to_grey(bgr).astype(int) - cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)).max() <= 1
    half = area_downscale(grey[:96, :130], 0.5)
    assert np.array_equal(half, cv2.resize(grey[:96, :130], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    assert area_downscale(grey, 0.3).shape == (29, 39)


def test_pgm_round_trip_and_bad_files(tmp_path):
    grey = np.arange(12 * 7, dtype=np.uint8).reshape(7, 12)
    write_pgm(tmp_path / "a.pgm", grey)
    assert np.array_equal(read_pgm(tmp_path / "a.pgm"), grey)
    assert np.array_equal(cv2.imread(str(tmp_path / "a.pgm"), cv2.IMREAD_GRAYSCALE), grey)
    cv2.imwrite(str(tmp_path / "b.pgm"), grey)
    assert np.array_equal(read_pgm(tmp_path / "b.pgm"), grey)
    (tmp_path / "c.pgm").write_bytes(b"P5\n# comment\n12 7\n255\n" + bytes(10))
    with pytest.raises(GreyImageError, match="header says 12x7"):
        read_pgm(tmp_path / "c.pgm")
    (tmp_path / "d.pgm").write_bytes(b"P2\n2 2\n255\n1 2 3 4\n")
    with pytest.raises(GreyImageError, match="not an 8-bit binary PGM"):
        read_pgm(tmp_path / "d.pgm")


@pytest.mark.parametrize(("libs", "codename", "expected"), [
    ((), "bookworm", "system_site_packages=0 constraints=none"),  # a PC: nothing from the OS
    (("lgpio.py",), "bookworm", "system_site_packages=1 constraints=firmware_config/constraints/bookworm.txt"),
    (("picamera2",), "trixie", "system_site_packages=1 constraints=firmware_config/constraints/trixie.txt"),
])
def test_bootstrap_uses_the_systems_pi_libraries_and_pins_numpy(tmp_path, libs, codename, expected):
    """A Pi with lgpio but a USB camera (no picamera2) still gets a venv that sees lgpio."""
    dist = tmp_path / "dist-packages"
    dist.mkdir()
    for lib in libs:
        (dist / lib).mkdir() if "." not in lib else (dist / lib).write_text("")
    os_release = tmp_path / "os-release"
    os_release.write_text(f"ID=debian\nVERSION_CODENAME={codename}\n")
    env = {**os.environ, "DIST_PACKAGES": str(dist), "OS_RELEASE": str(os_release)}
    result = subprocess.run([str(ROOT / "scripts" / "bootstrap.sh"), "--plan"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_constraints_pin_numpy_per_release():
    bookworm = (ROOT / "firmware_config/constraints/bookworm.txt").read_text()
    trixie = (ROOT / "firmware_config/constraints/trixie.txt").read_text()
    assert "numpy>=1.24,<2" in bookworm and "numpy>=2,<3" in trixie
