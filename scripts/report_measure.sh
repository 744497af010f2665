#!/usr/bin/env bash
# Size and draw time of `memfit report` pages for gpt2-xl's optimized plans
# (docs/report.md, "Size and speed"): the plan at 0.6 of the peak with
# swapping and recomputation, the recompute-only plan, and a synthetic stress
# page with the latter's arena stacked four times (about 20k rectangles).
# Each page is drawn three times in headless chromium; "drawn" is from the
# navigation's start to every chart drawn (the page's own clock).
#
#   scripts/report_measure.sh [WORK_DIR]     (needs build/bin/memfit and scripts/setup.sh's web/)
set -euo pipefail
cd "$(dirname "$0")/.."
memfit="${MEMFIT:-$PWD/build/bin/memfit}"
dir="${1:-$(mktemp -d)}"
mkdir -p "$dir"
"$memfit" zoo gpt2-xl --train -o "$dir/g.json" >/dev/null
"$memfit" optimize "$dir/g.json" --mem-limit-ratio 0.6 --deterministic -o "$dir/swap.json" >/dev/null
"$memfit" optimize "$dir/g.json" --mem-limit-ratio 0.6 --no-swap --deterministic -o "$dir/recompute.json" >/dev/null
"$memfit" report "$dir/swap.json" -o "$dir/swap.html"
"$memfit" report "$dir/recompute.json" -o "$dir/recompute.html"
python3 - "$dir/recompute.html" "$dir/stress.html" <<'PY'
# The arena of the page stacked four times (offsets shifted by the arena's height).
import json, sys
src, dst = sys.argv[1], sys.argv[2]
page = open(src, encoding="utf-8").read()
tag = '<script type="application/json" id="memfit-data">'
a = page.index(tag) + len(tag)
b = page.index("</script>", a)
data = json.loads(page[a:b])
arena = data["arena"]
n, height = len(arena["start"]), arena["arena_bytes"]
for key in ["start", "end", "size", "role", "storage", "op", "origin"]:
    arena[key] = arena[key] * 4
arena["offset"] = [o + k * height for k in range(4) for o in arena["offset"][:n]]
arena["arena_bytes"] = 4 * height
text = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
open(dst, "w", encoding="utf-8").write(page[:a] + text + page[b:])
print(f"wrote {dst}: {len(arena['start'])} storage instances (synthetic)")
PY
for page in swap recompute stress; do
  size=$(stat -c %s "$dir/$page.html")
  for run in 1 2 3; do
    echo "$page.html ($size bytes): $(node tests/report/browser_test.mjs --web web --page "$dir/$page.html" | head -1)"
  done
done
