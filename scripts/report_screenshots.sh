#!/usr/bin/env bash
# The screenshots of docs/report/ (README, docs/report.md): each chart of the
# report of bert-base's training step at 0.5 of its peak and resnet-50's at
# 0.3, optimized with --deterministic (with the search's chart), and of
# `memfit dtr --sweep --report` on the shared ResNet-32 log, drawn in
# headless chromium.
#
#   scripts/report_screenshots.sh [OUT_DIR]     (default docs/report)
set -euo pipefail
cd "$(dirname "$0")/.."
memfit="${MEMFIT:-$PWD/build/bin/memfit}"
out="${1:-docs/report}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for spec in bert-base:0.5 resnet-50:0.3; do
  model="${spec%:*}" ratio="${spec#*:}"
  "$memfit" zoo "$model" --train -o "$work/g.json" >/dev/null
  "$memfit" optimize "$work/g.json" --mem-limit-ratio "$ratio" --deterministic --json --verbose \
    -o "$work/p.json" >"$work/opt.json" 2>/dev/null
  "$memfit" report "$work/p.json" --trace "$work/opt.json" -o "$work/$model.html"
  node tests/report/browser_test.mjs --web web --page "$work/$model.html" --shots "$work/shots" \
    --prefix "$model-$ratio-" >/dev/null
  for chart in memory arena streams search; do cp "$work/shots/$model-$ratio-$chart.png" "$out/"; done
done
# DTR's figure: every heuristic's overhead against the budget on the shared ResNet-32 log.
"$memfit" dtr ../shared/data/dtr/resnet32-56.log --sweep --report "$work/dtr.html" >/dev/null
node tests/report/browser_test.mjs --web web --page "$work/dtr.html" --shots "$work/shots" --prefix dtr-resnet32-56- >/dev/null
cp "$work/shots/dtr-resnet32-56-dtr.png" "$out/"
ls -la "$out"
