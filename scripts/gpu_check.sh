#!/usr/bin/env bash
# memfit.fit on a CUDA machine (issue 18, item 7): resnet-50 (batch 64) and a
# BERT-base-size encoder (batch 32, seq 128) at 1.0 and 0.5 of the simulated
# peak; prints torch.cuda.max_memory_allocated and the median step time of
# eager and of memfit's generated step, against the simulator's prediction
# for that device (python/bench/gpu_check.py); then it profiles each model's
# step on the GPU into DIR/<model>.costs.json (ops timed in the step, workspace
# measured): carry DIR back and `memfit simulate DIR/<model>-<ratio>.plan.json
# --device h200 --costs DIR/<model>.costs.json` gives the simulator's figures
# with the GPU's own costs.
#
#   scripts/gpu_check.sh prepare [DIR] [PROFILE] [OPTIONS]   # here: capture + plan (needs the native module), ~30 s
#     OPTIONS: python/bench/gpu_check.py's (--models bert-s512 --fission-parts 8 16 --lat-ratios 1.1: fission)
#   scripts/gpu_check.sh run [DIR]                 # on the GPU: pure Python, under 8 minutes
#
# The GPU machine needs torch (1.13 or 2.x) and torchvision, not the native
# module nor Debian's C++ libraries, and fetches nothing: carry DIR (default
# gpu_plans/, ~5 MB) and the checkout over. CI has no GPU and does not run it.
# MEMFIT_PYTHON picks the interpreter of `run` (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
dir="${2:-gpu_plans}"
case "$mode" in
  prepare)
    py=/usr/bin/python3
    build="$(ls -d build*/python 2>/dev/null | head -1 || true)"
    PYTHONPATH="python${build:+:$build}" nice "$py" python/bench/gpu_check.py prepare "$dir" --profile "${3:-h200}" "${@:4}"
    ;;
  run)
    py="${MEMFIT_PYTHON:-python3}"
    [ -f "$dir/manifest.json" ] || { echo "gpu_check: $dir/manifest.json not found: run '$0 prepare $dir' first" >&2; exit 2; }
    PYTHONPATH=python timeout 480 "$py" python/bench/gpu_check.py run "$dir" --costs
    ;;
  *)
    echo "usage: $0 prepare [DIR] [PROFILE] | run [DIR]" >&2
    exit 2
    ;;
esac
