"""Measured vs simulated peak memory of a graph or plan on the CPU.

    python3 -m memfit.report GRAPH_OR_PLAN.json [--arena] [--json] [--cli PATH]
    python3 -m memfit.report GRAPH_OR_PLAN.json --html REPORT.html [--device cpu] [--measured-out M.json]

Runs the plan (a graph runs as its program-order plan, the one `memfit plan`
writes) with memfit.plan.execute and measures its peak two ways:

  - tracked: after every step, the bytes of the distinct torch storages that
    the executor's live tensors reference (sources included). It sees what the
    simulator models (storages between their allocation and their free step)
    and nothing else, so it should equal the simulator's peak up to alignment;
  - allocator: torch.profiler(profile_memory=True) records every CPU
    allocation and free of the run; the peak of their running sum also sees
    op-internal temporaries (im2col buffers, reductions' scratch) and the
    executor's own copies (arena copies, RNG states), minus nothing.

and compares both with the simulator's peak_bytes (`memfit simulate ...
--device cpu --json`).

With --html, the tracked bytes after every step are written as a
memfit.measured series (docs/report.md) and `memfit report PATH --measured
SERIES -o REPORT.html` draws them over the simulated memory curve, step for
step (entry i at the simulated start of step i). The executor makes each
source at its first use, so before that the measured line is lower.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from .graph import Error
from .plan import execute, is_plan, load_plan, program_order_plan
from .profile import allocation_peak_and_end


@dataclass
class PeakReport:
    name: str
    tracked_bytes: int
    allocator_bytes: int
    simulated_bytes: int

    @property
    def tracked_ratio(self) -> float:
        return self.tracked_bytes / self.simulated_bytes if self.simulated_bytes else float("nan")

    @property
    def allocator_ratio(self) -> float:
        return self.allocator_bytes / self.simulated_bytes if self.simulated_bytes else float("nan")


def find_cli() -> Optional[str]:
    cli = os.environ.get("MEMFIT_CLI")
    if cli:
        return cli
    root = Path(__file__).resolve().parents[2]
    for build in sorted(root.glob("build*")):
        if (build / "bin" / "memfit").exists():
            return str(build / "bin" / "memfit")
    return None


def simulated_peak_bytes(path: str, cli: Optional[str] = None) -> int:
    """peak_bytes of `memfit simulate PATH --device cpu --json` (graph or plan)."""
    cli = cli or find_cli()
    if not cli:
        raise Error("memfit CLI not found (set MEMFIT_CLI or pass --cli)")
    proc = subprocess.run([cli, "simulate", str(path), "--device", "cpu", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise Error(f"memfit simulate {path}: {proc.stderr.strip()}")
    return int(json.loads(proc.stdout)["peak_bytes"])


def allocator_peak_bytes(fn) -> int:
    """Peak of the running sum of CPU allocations minus frees while fn() runs (torch.profiler)."""
    return allocation_peak_and_end(fn)[0]


def measure(path, *, arena: bool = False, cli: Optional[str] = None, seed: int = 0) -> PeakReport:
    """Measured (tracked and allocator) and simulated peak of a graph or plan file."""
    path = str(path)
    plan = load_plan(path) if is_plan(path) else program_order_plan(path)
    tracked = execute(plan, seed=seed, arena=arena).peak_bytes
    allocator = allocator_peak_bytes(lambda: execute(plan, seed=seed, arena=arena, track_memory=False))
    return PeakReport(plan.graph.name, tracked, allocator, simulated_peak_bytes(path, cli))


def measured_series(path, *, arena: bool = False, seed: int = 0) -> dict:
    """The memfit.measured series of a real run of the plan (a graph: its program
    order): the executor's tracked live bytes after each step."""
    path = str(path)
    plan = load_plan(path) if is_plan(path) else program_order_plan(path)
    run = execute(plan, seed=seed, arena=arena, track_memory=True)
    if len(run.bytes_after_step) != len(plan.steps):
        raise Error(f"{path}: measured {len(run.bytes_after_step)} steps of {len(plan.steps)}")
    return {"format": "memfit.measured", "version": 1,
            "label": "executor, tracked storages" + (" (arena)" if arena else ""),
            "bytes_after_step": run.bytes_after_step}


def write_html(path, output, *, device: str = "cpu", arena: bool = False, cli: Optional[str] = None,
               measured_out: Optional[str] = None) -> str:
    """Measures a run of `path` and has `memfit report` draw it over the simulated
    curve into `output`; returns the CLI's line. measured_out: keep the series there."""
    cli = cli or find_cli()
    if not cli:
        raise Error("memfit CLI not found (set MEMFIT_CLI or pass --cli)")
    series = measured_series(path, arena=arena)
    target = measured_out or str(output) + ".measured.json"
    with open(target, "w") as f:
        json.dump(series, f)
    try:
        proc = subprocess.run([cli, "report", str(path), "--device", device, "--measured", target, "-o", str(output),
                               "--quiet"], capture_output=True, text=True)
    finally:
        if measured_out is None:
            os.unlink(target)
    if proc.returncode != 0:
        raise Error(f"memfit report {path}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m memfit.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="graph or plan JSON")
    parser.add_argument("--arena", action="store_true", help="run the plan's storages in one arena")
    parser.add_argument("--cli", help="memfit CLI (default: $MEMFIT_CLI or build*/bin/memfit)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--html", help="write an HTML report with the measured memory over the simulated curve")
    parser.add_argument("--device", default="cpu", help="with --html: the device the curve is simulated on")
    parser.add_argument("--measured-out", help="with --html: also keep the measured series here")
    args = parser.parse_args(argv)
    if args.html:
        try:
            print(write_html(args.path, args.html, device=args.device, arena=args.arena, cli=args.cli,
                             measured_out=args.measured_out))
        except Error as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        r = measure(args.path, arena=args.arena, cli=args.cli)
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**asdict(r), "tracked_ratio": r.tracked_ratio, "allocator_ratio": r.allocator_ratio},
                         indent=1))
    else:
        mib = 1 << 20
        print(f"{'graph':<14} {'simulated':>12} {'tracked':>12} {'ratio':>7} {'allocator':>12} {'ratio':>7}")
        print(f"{r.name:<14} {r.simulated_bytes / mib:>8.2f} MiB {r.tracked_bytes / mib:>8.2f} MiB "
              f"{r.tracked_ratio:>7.3f} {r.allocator_bytes / mib:>8.2f} MiB {r.allocator_ratio:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
