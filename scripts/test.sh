#!/usr/bin/env bash
# The test suite, after the same set-up as the demo (Docker engine and images
# included: the docker tests run for real, they are not skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec python3 -m pytest "$@"
