#!/usr/bin/env bash
# Groups crash inputs by cause: replays each with its fuzz target and prints
# one line per distinct signature (the error, then the first frames in
# memfit's own code), with a count and one reproducer.
#
#   fuzz/tools/triage.sh TARGET [CRASH...]   (default: build-fuzz/crashes/TARGET/*)
set -uo pipefail
cd "$(dirname "$0")/../.."
t="$1"
shift
bin="build-fuzz/bin/fuzz_$t"
if [ $# -eq 0 ]; then set -- build-fuzz/crashes/"$t"/*; fi
sym="$(command -v llvm-symbolizer-16 || command -v llvm-symbolizer || true)"
declare -A count example
for f in "$@"; do
  [ -f "$f" ] || continue
  out="$(ASAN_SYMBOLIZER_PATH="$sym" ASAN_OPTIONS=detect_leaks=1:handle_abort=1 \
         UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 timeout 60 "$bin" -timeout=10 -rss_limit_mb=2048 "$f" 2>&1)"
  # The error: a sanitizer report, an uncaught exception, a finding or a timeout.
  what="$(grep -m1 -E "what\(\):|runtime error:|==ERROR: (AddressSanitizer|LeakSanitizer)|memfit fuzz finding|ERROR: libFuzzer: (timeout|out-of-memory)" <<<"$out" |
          sed -E 's/^==[0-9]+==//; s/ on unknown address.*//; s/ on address 0x[0-9a-f]+.*//; s|/work/[^ :]*/src/|src/|; s/0x[0-9a-f]+/0x../g' |
          sed -E "s/'[^']*'/'…'/g; s/\"[^\"]*\"/\"…\"/g" | cut -c1-160)"
  [ -n "$what" ] || what="(no crash: $(tail -n1 <<<"$out" | cut -c1-80))"
  # The first frames in memfit's code (src/, fuzz/) of the first stack.
  frames="$(grep -E '^ +#[0-9]+ 0x[0-9a-f]+ in .* /work/[^ ]*/(src|fuzz)/' <<<"$out" | head -n 3 |
            sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in //; s/\(.*\) (\/work)/ \1/; s|/work/[^ ]*/(src\|fuzz)/|\1/|; s/:[0-9]+$//' | paste -sd '<' | cut -c1-400)"
  key="$what | $frames"
  count[$key]=$(( ${count[$key]:-0} + 1 ))
  example[$key]="${example[$key]:-$f}"
done
for key in "${!count[@]}"; do
  printf '%s x%d  %s\n    e.g. %s\n' "$t" "${count[$key]}" "$key" "${example[$key]}"
done
