#!/usr/bin/env bash
# pip install . in a fresh venv, offline: a venv made with --system-site-packages
# over Debian's python3 (setuptools, pybind11, torch from the archive), then
# `pip install --no-build-isolation --no-index .`, then memfit.fit and
# memfit.optimize from the installed package, run outside the source tree.
# The C++ build goes to build-pip/ (ccache: seconds when the cache is warm).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
venv="$(mktemp -d)"
trap 'rm -rf "$venv"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --no-build-isolation --no-index --quiet "$root"
cd "$venv"
"$venv/bin/python" - <<'PY'
import os
import torch, torch.nn as nn, torch.nn.functional as F
import memfit
assert memfit.__file__.startswith(os.environ.get("VIRTUAL_ENV", os.getcwd())) or "site-packages" in memfit.__file__, memfit.__file__
assert memfit.native_available(), "the installed package has no native module"
torch.manual_seed(0)
m = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
opt = torch.optim.SGD(m.parameters(), lr=0.1)
x, y = torch.randn(512, 64), torch.randint(0, 4, (512,))
step = memfit.fit(m, opt, F.cross_entropy, (x, y), mem_limit_ratio=0.8, work_budget=20)
losses = [float(step(x, y)) for _ in range(3)]
assert losses[-1] < losses[0], losses
try:
    memfit.optimize(step.last.graph, mem_limit_ratio=0.01, work_budget=5)
except memfit.Error as e:
    assert "cannot be met" in str(e)
print(f"pip install: ok ({memfit.__file__}; losses {losses[0]:.4f} -> {losses[-1]:.4f})")
PY
