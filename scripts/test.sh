#!/usr/bin/env bash
# The whole test suite: set-up (first run), lint, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --dev
# The public EU DCC test vectors sit beside the checkout (they are data, not part of the appliance).
export CHECKPOINT_DGC_TESTDATA="${CHECKPOINT_DGC_TESTDATA:-$(cd .. && pwd)/shared/conformance/dgc-testdata}"
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
