#!/usr/bin/env bash
# Sets everything up, builds, and runs memfit's main job on the built-in
# default: the BERT-base training step (forward, backward, SGD update; batch
# 32, sequence 512) from the model zoo, its memory statistics, and the
# fastest plan that fits in half of its unoptimized peak on an A100
# (out/MODEL-plan.json, checked and simulated).
#
#   scripts/run.sh [MODEL] [extra `memfit zoo` flags]   (default: bert-base --batch 32 --seq 512)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
MODEL="${1:-bert-base}"
if (($# == 0)); then set -- bert-base --batch 32 --seq 512; fi
shift || true
mkdir -p out
./build/bin/memfit zoo "$MODEL" --train "$@" -o "out/$MODEL-train.json"
./build/bin/memfit stats "out/$MODEL-train.json"
./build/bin/memfit optimize "out/$MODEL-train.json" --mem-limit-ratio 0.5 --device a100 -o "out/$MODEL-plan.json"
./build/bin/memfit simulate "out/$MODEL-plan.json" --device a100
