#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets, one folder per target, from
# the committed hand-written seeds (fuzz/seeds/), the memfit CLI (zoo graphs,
# their plans and imports) and the shared data (../shared/data: MiniMalloc
# CSVs and real traces, DTR logs, Checkmate graphs), cut to small sizes.
# Nothing from the shared data is copied into the repository.
#
#   fuzz/tools/make_seeds.sh MEMFIT_CLI OUT_DIR DATA_DIR
set -euo pipefail
MEMFIT="$1"
OUT="$2"
DATA="$3"
FUZZ_DIR="$(cd "$(dirname "$0")/.." && pwd)"
PY=/usr/bin/python3

tmp="$OUT.tmp"
rm -rf "$tmp"
for t in graph_json plan_json alloc_csv dtr_trace checkmate onnx cost_table device_json; do
  mkdir -p "$tmp/$t"
  if [ -d "$FUZZ_DIR/seeds/$t" ]; then cp "$FUZZ_DIR/seeds/$t"/* "$tmp/$t/"; fi
done

# Graph JSON and PLAN.json: small zoo models, forward and training step.
zoo=(
  "mlp:mlp"
  "mlp-train:mlp --train"
  "mlp-adam:mlp --train --optimizer adam --batch 2"
  "resnet18-fwd:resnet-18 --batch 1 --image 32"
  "bert-tiny-fwd:bert-tiny --batch 1 --seq 8"
)
for entry in "${zoo[@]}"; do
  name="${entry%%:*}"
  read -r -a args <<<"${entry#*:}"
  "$MEMFIT" zoo "${args[@]}" -o "$tmp/graph_json/$name.json" >/dev/null 2>&1 || {
    echo "make_seeds: memfit zoo ${args[*]} failed (skipped)" >&2
    continue
  }
done

# ONNX models written with the onnx Python package, and their imports as
# graph JSON.
"$PY" "$FUZZ_DIR/tools/make_onnx_seeds.py" "$tmp/onnx"
for model in "$tmp/onnx"/*.onnx; do
  "$MEMFIT" import "$model" --batch 2 -o "$tmp/graph_json/onnx-$(basename "$model" .onnx).json" >/dev/null 2>&1 || true
done

# MiniMalloc CSVs: the first buffers of each puzzle and real trace.
if [ -d "$DATA/alloc" ]; then
  for f in "$DATA"/alloc/minimalloc-challenging/*.csv; do
    [ -e "$f" ] && head -n 40 "$f" >"$tmp/alloc_csv/minimalloc-$(basename "$f")"
  done
  for f in "$DATA"/alloc/realworld/*.csv.gz; do
    [ -e "$f" ] || continue
    # (head closes the pipe early: gzip's SIGPIPE is expected.)
    { gzip -dc "$f" || true; } | head -n 60 >"$tmp/alloc_csv/realworld-$(basename "$f" .gz)"
  done
else
  echo "make_seeds: $DATA/alloc not found: only the hand-written CSV seeds" >&2
fi

# DTR logs: the first lines (the constants, then the first calls), and a
# window from the middle (names defined before it: a lowering error).
if [ -d "$DATA/dtr" ]; then
  for f in "$DATA"/dtr/*.log; do
    [ -e "$f" ] || continue
    b="$(basename "$f" .log)"
    head -n 120 "$f" >"$tmp/dtr_trace/$b-head120.log"
    head -n 400 "$f" >"$tmp/dtr_trace/$b-head400.log"
    sed -n '1900,1960p' "$f" >"$tmp/dtr_trace/$b-middle.log"
  done
fi

# Checkmate graphs: the small ones whole, the first nodes of the others,
# and the DTR logs / Checkmate graphs imported as graph JSON.
if [ -d "$DATA/remat/checkmate" ]; then
  for f in "$DATA"/remat/checkmate/*.json; do
    [ -e "$f" ] || continue
    b="$(basename "$f" .json)"
    if [ "$(wc -c <"$f")" -le 32768 ]; then
      cp "$f" "$tmp/checkmate/$b.json"
    fi
    "$PY" "$FUZZ_DIR/tools/trim_checkmate.py" "$f" "$tmp/checkmate/$b-first30.json" 30
  done
  for f in "$tmp"/checkmate/VGG16*.json "$tmp"/checkmate/random_layered_n100*-first30.json; do
    [ -e "$f" ] && "$MEMFIT" import "$f" -o "$tmp/graph_json/import-$(basename "$f")" >/dev/null 2>&1 || true
  done
fi
"$MEMFIT" import "$FUZZ_DIR/seeds/dtr_trace/small.log" -o "$tmp/graph_json/import-dtr-small.json" >/dev/null 2>&1 || true

# PLAN.json: `memfit plan` of the graphs small enough that their plan stays
# under the plan_json target's input limit (64 KiB).
for g in "$tmp"/graph_json/*.json; do
  [ "$(wc -c <"$g")" -le 20000 ] || continue
  "$MEMFIT" plan "$g" --planner best-fit -o "$tmp/plan_json/$(basename "$g" .json).plan.json" >/dev/null 2>&1 ||
    echo "make_seeds: memfit plan $(basename "$g") failed (skipped)" >&2
done

rm -rf "$OUT"
mv "$tmp" "$OUT"
for t in "$OUT"/*; do
  echo "seeds: $(basename "$t"): $(ls "$t" | wc -l) files, $(du -sk "$t" | cut -f1) KiB"
done
