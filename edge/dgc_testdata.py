"""Where the public EU DCC test vectors are (benchmarks and tests use them as they are)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "CHECKPOINT_DGC_TESTDATA"


def dgc_testdata_dir() -> Path:
    """``$CHECKPOINT_DGC_TESTDATA``, else ``shared/conformance/dgc-testdata`` beside this checkout."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    return Path(__file__).resolve().parents[2] / "shared" / "conformance" / "dgc-testdata"
