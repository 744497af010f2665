#!/usr/bin/env bash
# Sets everything up, builds, and runs every test (CTest over the
# GoogleTest suites). CI calls this through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
JOBS="$(nproc 2>/dev/null || echo 2)"
ctest --test-dir build --output-on-failure -j "$JOBS" --timeout 600
