"""Where the public EU DCC test vectors are (benchmarks and tests use them as they are)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "CHECKPOINT_DGC_TESTDATA"


def dgc_testdata_dir() -> Path:
    """``$CHECKPOINT_DGC_TESTDATA``, else ``../shared/conformance/dgc-testdata`` from the current folder.

    Never a path inside the installed package: the vectors are public data beside the checkout
    (``scripts/test.sh`` sets the variable), not part of the appliance.
    """
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    return Path.cwd().parent / "shared" / "conformance" / "dgc-testdata"
