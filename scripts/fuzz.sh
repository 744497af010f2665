#!/usr/bin/env bash
# Fuzzes memfit's readers with libFuzzer (docs/fuzzing.md).
#
#   scripts/fuzz.sh TARGET SECONDS     one target (graph_json, plan_json, ...)
#   scripts/fuzz.sh all SECONDS        every target, SECONDS each
#   scripts/fuzz.sh list               the targets
#
# Installs clang and libFuzzer's runtime when missing (scripts/setup.sh),
# builds the fuzz build in build-fuzz/ (clang++, -DMEMFIT_FUZZ=ON) and the
# CLI in build/ (for the seeds), writes the seeds (build-fuzz/seeds/), replays
# the regression inputs of fuzz/regressions/TARGET/, then fuzzes for SECONDS
# with the corpus kept in build-fuzz/corpus/TARGET/ between runs. Exits 1 on
# any crash, leak, timeout or out-of-memory, and prints the reproducer:
#   build-fuzz/bin/fuzz_TARGET REPRODUCER
#
# Environment:
#   FUZZ_JOBS=N         build jobs (default: nproc)
#   FUZZ_KEEP_GOING=1   keep fuzzing after a crash (libFuzzer fork mode); every
#                       crash is saved in build-fuzz/crashes/TARGET/
#   FUZZ_DATA=DIR       the shared data (default: ../shared/data)
#   FUZZ_ARGS="..."     more libFuzzer flags
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

# Targets and their input size limits (bytes).
declare -A MAX_LEN=(
  [graph_json]=65536 [plan_json]=65536 [alloc_csv]=4096 [dtr_trace]=16384
  [checkmate]=32768 [onnx]=16384 [cost_table]=4096 [device_json]=2048
)
TARGETS=(graph_json plan_json alloc_csv dtr_trace checkmate onnx cost_table device_json)

usage() {
  echo "usage: scripts/fuzz.sh TARGET|all SECONDS   (targets: ${TARGETS[*]})" >&2
  exit 2
}
[ "${1:-}" = list ] && { printf '%s\n' "${TARGETS[@]}"; exit 0; }
[ $# -eq 2 ] || usage
WHICH="$1"
SECONDS_EACH="$2"
[[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] && [ "$SECONDS_EACH" -ge 1 ] || usage
if [ "$WHICH" = all ]; then
  RUN=("${TARGETS[@]}")
elif [ -n "${MAX_LEN[$WHICH]:-}" ]; then
  RUN=("$WHICH")
else
  usage
fi

JOBS="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}"
DATA="${FUZZ_DATA:-$ROOT/../shared/data}"
BUILD="$ROOT/build-fuzz"

# 1. Packages (clang, libclang-rt-dev for libFuzzer), the CLI for the seeds,
#    and the fuzz build.
MEMFIT_SETUP_NO_BUILD=1 scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS" --target memfit_cli >/dev/null
cmake -S . -B "$BUILD" -DMEMFIT_FUZZ=ON -DCMAKE_CXX_COMPILER="${FUZZ_CXX:-clang++-16}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=()
for t in "${RUN[@]}"; do targets+=("fuzz_$t"); done
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}" >/dev/null

# 2. Seeds: written anew when the generator or the hand-written seeds change.
stamp="$(cat fuzz/tools/* fuzz/seeds/*/* | cksum | cut -d' ' -f1)"
if [ "$(cat "$BUILD/seeds/.stamp" 2>/dev/null)" != "$stamp" ]; then
  fuzz/tools/make_seeds.sh "$ROOT/build/bin/memfit" "$BUILD/seeds" "$DATA"
  echo "$stamp" >"$BUILD/seeds/.stamp"
fi

# 3. Each target: replay the regressions, then fuzz.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0:handle_abort=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# Symbolized stacks (ASan does not always find the symbolizer by itself).
for s in llvm-symbolizer-16 llvm-symbolizer; do
  if command -v "$s" >/dev/null; then
    export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v "$s")}"
    break
  fi
done
failed=()
for t in "${RUN[@]}"; do
  bin="$BUILD/bin/fuzz_$t"
  corpus="$BUILD/corpus/$t"
  crashes="$BUILD/crashes/$t"
  log="$BUILD/logs/$t.log"
  mkdir -p "$corpus" "$crashes" "$BUILD/logs"
  flags=(-max_len="${MAX_LEN[$t]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
         -dict="$ROOT/fuzz/dicts/$t.dict" -artifact_prefix="$crashes/")
  regressions=()
  if [ -d "fuzz/regressions/$t" ]; then
    mapfile -t regressions < <(find "fuzz/regressions/$t" -type f ! -name '*.md' | sort)
  fi
  if ((${#regressions[@]})); then
    echo "fuzz $t: replaying ${#regressions[@]} regression input(s)"
    if ! "$bin" -timeout=10 -rss_limit_mb=2048 "${regressions[@]}" >"$BUILD/logs/$t.regressions.log" 2>&1; then
      tail -n 40 "$BUILD/logs/$t.regressions.log" >&2
      echo "fuzz $t: FAILED on a regression input (log: $BUILD/logs/$t.regressions.log)" >&2
      failed+=("$t")
      continue
    fi
  fi
  extra=()
  if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
    extra=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  fi
  # shellcheck disable=SC2206
  extra+=(${FUZZ_ARGS:-})
  seeds=("$BUILD/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && seeds+=("fuzz/regressions/$t")
  echo "fuzz $t: ${SECONDS_EACH}s (corpus $corpus, log $log)"
  before="$(find "$crashes" -type f | wc -l)"
  status=0
  "$bin" "${flags[@]}" -max_total_time="$SECONDS_EACH" "${extra[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1 </dev/null ||
    status=$?
  grep -E '^(#[0-9]+ +(DONE|INITED)|stat::)' "$log" | sed "s/^/  $t: /" || true
  after="$(find "$crashes" -type f | wc -l)"
  if [ "$status" -ne 0 ] || [ "$after" -ne "$before" ]; then
    grep -E -A40 '^==[0-9]+==ERROR|^memfit fuzz finding|runtime error|ERROR: libFuzzer|uncaught exception|terminate called' "$log" |
      head -n 60 >&2 || true
    for r in $(grep -o "Test unit written to [^ ]*" "$log" | awk '{print $5}' | sort -u); do
      echo "fuzz $t: CRASH, reproduce with: $bin $r" >&2
    done
    if [ "$after" -ne "$before" ]; then
      echo "fuzz $t: $((after - before)) new input(s) in $crashes" >&2
    fi
    echo "fuzz $t: FAILED (exit $status; log: $log)" >&2
    failed+=("$t")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: failures in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no crash in ${RUN[*]}"
