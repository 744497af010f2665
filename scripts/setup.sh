#!/usr/bin/env bash
# Installs what memfit needs from Debian (only what is missing) and builds it
# (Release, incremental, ccache when present). Idempotent; safe under CI=true
# with no standard input.
#
#   scripts/setup.sh [BUILD_DIR]     (default: build)
#
# MEMFIT_SETUP_NO_BUILD=1 installs the packages only (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"

PACKAGES=(
  g++ cmake make ccache pkg-config
  nlohmann-json3-dev libcli11-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-dev pybind11-dev python3-pytest
  python3-torch python3-torchvision python3-networkx libopenblas0-pthread
  libonnx-dev libprotobuf-dev protobuf-compiler python3-onnx
  coinor-libcbc-dev
  # Fuzzing (scripts/fuzz.sh): clang++-16 and libFuzzer's runtime (compiler-rt);
  # Debian's default clang 14 cannot capture structured bindings (C++20).
  clang-16 libclang-rt-16-dev
  # `memfit report`: Node.js installs the chart library from npm (web/), and
  # its tests draw the page in a headless chromium (tests/report/).
  nodejs chromium
)
# npm comes with Node.js from nodesource; Debian packages it apart.
if ! command -v npm >/dev/null 2>&1; then PACKAGES+=(npm); fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq </dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

# The front-end pieces of `memfit report` (web/package-lock.json): the chart
# library the build compiles into every report, and the headless-browser
# driver of its tests. Installed again only when the lock file changed.
if ! cmp -s web/package-lock.json web/node_modules/.memfit-installed-lock 2>/dev/null; then
  echo "setup: npm ci in web/" >&2
  (cd web && npm ci --no-audit --no-fund --loglevel=error </dev/null)
  cp web/package-lock.json web/node_modules/.memfit-installed-lock
fi

if [ "${MEMFIT_SETUP_NO_BUILD:-0}" = 1 ]; then exit 0; fi
JOBS="$(nproc 2>/dev/null || echo 2)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
