"""``checkpoint bench risk --publish-rows N``: publish an N-row list the way the authority would.

A CSV of N citizen ids (F0 / F1, a third with an end date) is written to a temporary folder, then
``checkpoint risk publish`` runs on it as its own process, so the figures are the publisher's:
wall time, and peak resident memory from the kernel's accounting of that child (``wait4``).
Writing the input is not timed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.wire.identifiers import IdentifierKey
from sync.wire.keyfiles import save_private_key

CHUNK = 500_000


def write_input(path: Path, rows: int, seed: int = 11) -> int:
    """A CSV of ``rows`` distinct 12-digit ids; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(rows) + 10**11  # distinct 12-digit ids, in no order
    with path.open("w", encoding="ascii") as fh:
        fh.write("id,status,until\n")
        for start in range(0, rows, CHUNK):
            part = ids[start:start + CHUNK]
            status = np.where(part % 7 == 0, "F0", "F1")
            until = np.where(part % 3 == 0, "2030-12-31", "")
            fh.write("".join(f"{i},{s},{u}\n" for i, s, u in zip(part.tolist(), status.tolist(), until.tolist(),
                                                                   strict=True)))
    return path.stat().st_size


def run_publish(rows: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="bench-risk-publish-"))
    try:
        source = root / "list.csv"
        size = write_input(source, rows)
        key, id_key = root / "publisher.pem", root / "holder_id.key"
        save_private_key(key, Ed25519PrivateKey.generate())
        IdentifierKey.generate().save(id_key)
        errors = root / "stderr.txt"
        start = time.perf_counter()
        with errors.open("wb") as err:
            child = subprocess.Popen([sys.executable, "-m", "edge.cli", "risk", "publish", "--dir",
                                      str(root / "central"), "--key", str(key), "--id-key", str(id_key),
                                      "--covers", "CP1:*", "--at", "2026-12-01T00:00:00Z", str(source)],
                                     stdout=subprocess.DEVNULL, stderr=err)
            _pid, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"risk publish failed: {errors.read_text()[-800:]}")
        return {"publish_rows": rows, "publish_input_mb": round(size / 2**20, 1), "publish_s": round(elapsed, 2),
                "publish_rows_per_s": int(rows / elapsed), "publish_peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
