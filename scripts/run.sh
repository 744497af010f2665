#!/usr/bin/env bash
# Sets everything up, builds, and runs memfit's main job on the built-in
# default: the BERT-base training step (forward, backward, SGD update) from
# the model zoo, then its memory statistics.
#
#   scripts/run.sh [MODEL] [extra `memfit zoo` flags]   (default: bert-base)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
MODEL="${1:-bert-base}"
shift || true
mkdir -p out
./build/bin/memfit zoo "$MODEL" --train "$@" -o "out/$MODEL-train.json"
./build/bin/memfit stats "out/$MODEL-train.json"
