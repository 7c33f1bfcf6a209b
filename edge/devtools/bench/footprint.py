"""``checkpoint bench footprint``: what the device install weighs and how much memory its daemon takes.

Installed size: the files of every distribution a device install pulls in (the project's
requirements without extras, followed transitively, as listed in each distribution's RECORD), and
the same with the ``opencv`` extra. Memory: the real ``checkpoint run`` daemon on the demo's
provisioned device (signed lists installed, background sync to a live loopback server, gpiozero
lamps on mock pins) replaying the travellers' frames, its peak RSS (VmHWM) read from /proc while it
runs. Twice: as on the picamera2 path (raw grey PGM frames, OpenCV made unimportable: any import
of it would be recorded and fail the run) and with OpenCV (PNG frames read by OpenCV).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from edge.devtools.bench.report import median

PROJECT = "checkpoint-appliance"
#: goals from the device's memory budget (systemd MemoryHigh=160M leaves room for a sync burst)
RSS_GOAL_MB = {"raw": 100, "opencv": 120}
#: the environment systemd/checkpoint.service gives the daemon (tests/test_systemd.py keeps them equal):
#: two malloc arenas instead of one per thread keep the sync and housekeeping threads' heaps small
DAEMON_ENV = {"MALLOC_ARENA_MAX": "2"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def _requirements(dist: metadata.Distribution, extras: set[str]) -> list[tuple[str, set[str]]]:
    """(name, extras) of the distribution's requirements that apply with ``extras``."""
    from packaging.requirements import Requirement

    wanted = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        wanted.append((req.name, set(req.extras)))
    return wanted


def installed_closure(extras: set[str] | None = None) -> dict[str, int]:
    """Bytes on disk per distribution of the project installed with ``extras`` (transitively)."""
    sizes: dict[str, int] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(PROJECT, set(extras or ()))]
    while todo:
        name, want = todo.pop()
        key = (metadata.distribution(name).metadata["Name"].lower(), frozenset(want))
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        if key[0] not in sizes:
            sizes[key[0]] = sum(_size(dist, f) for f in dist.files or [])
        todo.extend(_requirements(dist, want))
    return sizes


def _size(dist: metadata.Distribution, file: metadata.PackagePath) -> int:
    try:
        return Path(dist.locate_file(file)).stat().st_size
    except OSError:
        return 0


#: a ``cv2`` that records that someone imported it, then refuses
_BLOCKER = """import os
open(os.environ["CV2_IMPORT_MARKER"], "a").write("imported\\n")
raise ImportError("OpenCV is not installed on this device (bench footprint)")
"""


def _device(root: Path) -> tuple[Path, Path, Path, object]:
    """The demo's world: published lists, a provisioned device enrolled and synced, PNG and PGM frames."""
    import io

    import cv2

    from edge.config import load_config
    from edge.device.appliance import Appliance
    from edge.devtools.demo.world import Central, demo_now, make_travellers, provision_device, render_frames
    from edge.scan.greyimage import write_pgm

    now = demo_now()
    central = Central.create(root / "server")
    central.publish(now)
    url = central.start()
    png, pgm = root / "png", root / "pgm"
    render_frames(root / "one", make_travellers(central, now))
    png.mkdir()
    pgm.mkdir()
    for lap in range(4):  # four passes of the seven travellers: the run lasts a few seconds at 30 fps
        for frame in sorted((root / "one").iterdir()):
            shutil.copyfile(frame, png / f"{lap}-{frame.name}")
            write_pgm(pgm / f"{lap}-{frame.stem}.pgm", cv2.imread(str(frame), cv2.IMREAD_GRAYSCALE))
    provision_device(root / "device", central, url, png)
    config_path = root / "device" / "config.toml"
    appliance = Appliance(load_config(config_path), light_stream=io.StringIO())
    assert appliance.sync is not None
    appliance.sync.sync_until_done(deadline_s=60)
    appliance.close()
    return config_path, png, pgm, central


def _config_for(config_path: Path, frames: Path, out: Path) -> Path:
    text = config_path.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^path = ".*?(png|pgm)"$', f'path = "{frames}"', text)
    text = text.replace("loop = true", "loop = false").replace('backend = "terminal"', 'backend = "gpio"\n'
                                                                                      'pin_factory = "mock"')
    out.write_text(text, encoding="utf-8")
    return out


def _run_daemon(config: Path, env: dict[str, str]) -> tuple[float, int]:
    """Run ``checkpoint run`` to the end of the replay; (peak RSS in MB, exit code)."""
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config), "--fault-hold", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    status = Path(f"/proc/{proc.pid}/status")
    peak_kb = 0
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"daemon exited {proc.returncode}: {err[-800:]}")
    return peak_kb / 1024, proc.returncode


def run(quick: bool = False, **_: object) -> dict[str, object]:
    """Installed MB (device, device + OpenCV) and the daemon's peak RSS on both camera paths."""
    figures: dict[str, object] = {}
    device = installed_closure()
    with_cv = installed_closure({"opencv"})
    figures["installed_mb_device"] = round(sum(device.values()) / 1e6, 1)
    figures["installed_mb_device_opencv"] = round(sum(with_cv.values()) / 1e6, 1)
    figures["installed_dists_device"] = len(device)
    biggest = sorted(device.items(), key=lambda kv: -kv[1])[:4]
    figures["installed_largest_device"] = ", ".join(f"{n} {s / 1e6:.1f}" for n, s in biggest)
    runs = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        root = Path(tmp)
        config_path, png, pgm, central = _device(root)
        try:
            blocker = root / "no-opencv"
            (blocker / "cv2").mkdir(parents=True)
            (blocker / "cv2" / "__init__.py").write_text(_BLOCKER)
            marker = root / "cv2-imported"
            base_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "GPIOZERO_PIN_FACTORY")}
            base_env.update(DAEMON_ENV)
            raw_env = {**base_env, "CV2_IMPORT_MARKER": str(marker),
                       "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), base_env.get("PYTHONPATH")]))}
            for label, frames, env in (("raw", pgm, raw_env), ("opencv", png, base_env)):
                config = _config_for(config_path, frames, root / f"{label}.toml")
                peaks = [_run_daemon(config, env)[0] for _ in range(runs)]
                figures[f"daemon_peak_rss_mb_{label}"] = round(median(peaks), 1)
                figures[f"daemon_peak_rss_mb_{label}_runs"] = ", ".join(f"{p:.1f}" for p in peaks)
                figures[f"daemon_peak_rss_goal_mb_{label}"] = RSS_GOAL_MB[label]
            figures["opencv_imported_on_raw_path"] = marker.exists()
        finally:
            central.stop()
    return figures
