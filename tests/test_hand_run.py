"""The README's hand-run recipe, as printed: a relative ``--workdir``, then ``run`` and ``status`` on it.

``checkpoint demo --workdir demo --serve`` in the background; once it says the server stays up,
``checkpoint run --config demo/device/config.toml`` keeps deciding (the replay loops) until stopped,
and ``checkpoint status`` reads what it wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHECKPOINT = [sys.executable, "-m", "edge.cli"]


def test_readme_hand_run_recipe_with_relative_paths(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    demo_out = (tmp_path / "demo.out").open("w")
    demo = subprocess.Popen([*CHECKPOINT, "demo", "--workdir", "demo", "--serve"], cwd=tmp_path, env=env,
                            stdout=demo_out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "server stays up" not in (tmp_path / "demo.out").read_text():
            assert demo.poll() is None, (tmp_path / "demo.out").read_text()
            assert time.monotonic() < deadline, "the demo did not come up"
            time.sleep(0.2)
        assert not (tmp_path / "demo/device/demo").exists()  # the data folder is not doubled
        daemon = subprocess.Popen([*CHECKPOINT, "run", "--config", "demo/device/config.toml"], cwd=tmp_path,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(8)
        still_running = daemon.poll() is None
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
        assert still_running, f"the hand-run daemon exited early ({daemon.returncode}): {err[-2000:]}"
        assert daemon.returncode == 0, err[-2000:]
        # the demo traced its F0 case and listed the resident as F1: the DCC holder is the one green left
        # (a second green for the same pass within the anti-passback window is amber)
        assert out.count("[  PASS  ]") >= 1 and out.count("[ REFUSE ]") >= 5 and "Traceback" not in err
        status = subprocess.run([*CHECKPOINT, "status", "--config", "demo/device/config.toml"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=60)
        assert "device:           HN-CP-001" in status.stdout and "policy:           version 1" in status.stdout
    finally:
        demo.terminate()
        demo.wait(30)
        demo_out.close()
