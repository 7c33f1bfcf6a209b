"""Bounded coverage-guided fuzzing of the CP1/HC1 reader with atheris (skipped where atheris is absent)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

atheris = pytest.importorskip("atheris", reason="atheris is not installed (no wheel for this platform/Python); "
                                                "the hypothesis fuzz tests in test_fuzz_passes.py still run")

HARNESS = Path(__file__).with_name("fuzz_reader_atheris.py")


def test_atheris_reader_fuzz_finds_no_crash(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(HARNESS), str(tmp_path / "corpus"), "-runs=60000", "-max_total_time=25",
         "-timeout=5", "-rss_limit_mb=1024", "-max_len=3000", "-seed=4", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr, proc.stderr[-3000:]
