"""Headless Chromium for page tests (Debian's chromium; the tests skip where it is absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="chromium is not installed (apt install chromium)")


def chromium(url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` with ``extra`` flags (--dump-dom, --screenshot=...)."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=90)
