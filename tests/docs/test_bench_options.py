"""The benchmark programs that measure the docs' figures refuse bad options
the way memfit does: one line on stderr naming the option (or their usage for
an unknown one), exit status 2,
never an abort (an uncaught exception used to end bench_remat --device nosuch
and any malformed number with status 134).

Run: MEMFIT_BIN_DIR=build/bin /usr/bin/python3 -m pytest -q tests/docs
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("MEMFIT_BIN_DIR", ROOT / "build" / "bin"))

CASES = [
    ("bench_remat", ["--device", "nosuch"], "unknown device 'nosuch'"),
    ("bench_remat", ["--time-budget", "abc"], "--time-budget 'abc': expected a finite number"),
    ("bench_remat", ["--ratios", "0.5,zz"], "--ratios 'zz': expected a finite number"),
    ("bench_fission", ["--time-budget", "1e999"], "--time-budget '1e999': expected a finite number"),
    ("bench_fission", ["--no-such-option"], "usage: bench_fission"),
    ("bench_alloc", ["--time-limit", "x"], "--time-limit 'x': expected a finite number"),
    ("bench_alloc", ["--no-such-option"], "usage: bench_alloc"),
]


@pytest.mark.parametrize("program,args,message", CASES, ids=[f"{c[0]}-{c[1][0]}" for c in CASES])
def test_a_bad_option_is_one_line_and_exit_two(program, args, message):
    if os.environ.get("MEMFIT_BENCH_BUILT") == "0":
        pytest.skip("built with MEMFIT_BUILD_BENCH=OFF: the benchmark programs are not there")
    tool = BIN_DIR / program
    if not tool.exists():
        pytest.skip(f"no {program} in {BIN_DIR}: build first or set MEMFIT_BIN_DIR")
    done = subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    if not message.startswith("usage:"):  # a usage text may take two lines
        assert done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""
