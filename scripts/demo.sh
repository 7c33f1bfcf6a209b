#!/usr/bin/env bash
# The end-to-end demo on embedded defaults: set-up (first run) and `checkpoint demo`.
# Extra arguments go to `checkpoint demo` (e.g. --serve to keep the server up for a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --demo
exec .venv/bin/checkpoint demo "$@"
