"""python3 -m memfit.dtr GRAPH.json (--budget-ratio R | --budget BYTES) [--heuristic H] [--verify] [--json]"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import List, Optional

import torch

from ..executor import run as eager_run
from ..graph import Error, load
from ..sources import make_sources
from .api import dtr_run
from .runtime import HEURISTICS

_DESCRIPTION = "A live DTR runtime: runs a memfit graph with real torch tensors under a byte budget."


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"error: {message}\n")


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def main(argv: Optional[List[str]] = None) -> int:
    parser = _Parser(prog="python3 -m memfit.dtr", description=_DESCRIPTION)
    parser.add_argument("graph", help="graph JSON")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-ratio", type=float, help="budget as a fraction of the unconstrained peak")
    budget.add_argument("--budget", type=int, help="budget in bytes")
    parser.add_argument("--heuristic", default="dtr", help=f"one of {', '.join(HEURISTICS)} (default dtr)")
    parser.add_argument("--seed", type=int, default=0, help="sources, dropout and the random heuristic (default 0)")
    parser.add_argument("--costs", help="'measured' (time each op's first run) or a cost table JSON "
                                        "(default: an estimate from the graph)")
    parser.add_argument("--verify", action="store_true",
                        help="also run eager memfit.run and check every output and updated state is bit-identical")
    parser.add_argument("--events", action="store_true", help="print every eviction, release and recomputation")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.heuristic not in HEURISTICS:
        parser.error(f"--heuristic: unknown heuristic '{args.heuristic}' (one of {', '.join(HEURISTICS)})")
    if args.budget_ratio is not None and not (args.budget_ratio > 0 and math.isfinite(args.budget_ratio)):
        parser.error(f"--budget-ratio: must be positive, got {args.budget_ratio}")
    if args.budget is not None and args.budget < 0:
        parser.error(f"--budget: must be non-negative, got {args.budget}")
    try:
        g = load(args.graph)
        sources = make_sources(g, seed=args.seed) if args.verify else {}
        dtr_sources = {k: v.clone() for k, v in sources.items()}
        run = dtr_run(g, dtr_sources or None, budget_bytes=args.budget, budget_ratio=args.budget_ratio,
                      heuristic=args.heuristic, seed=args.seed, costs=args.costs, record_events=args.events)
        mismatches: List[str] = []
        if args.verify:
            eager_sources = {k: v.clone() for k, v in sources.items()}
            eager_start = time.perf_counter()
            ref = eager_run(g, eager_sources, seed=args.seed)
            eager_s = time.perf_counter() - eager_start
            for name, value in sorted(ref.items()):
                got = run.outputs.get(name)
                if got is None or got.dtype != value.dtype or got.shape != value.shape or not torch.equal(got, value):
                    mismatches.append(name)
            for name in sorted(eager_sources):
                if not torch.equal(eager_sources[name], dtr_sources[name]):
                    mismatches.append(name)
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stats = run.stats()
    if args.verify:
        stats["verified"] = not mismatches
        stats["mismatches"] = mismatches
        stats["eager_wall_s"] = eager_s
    if args.json:
        print(json.dumps({"graph": g.name, **stats}, indent=1))
    else:
        ratio = run.budget_bytes / run.unconstrained_peak_bytes if run.unconstrained_peak_bytes else 0.0
        print(f"{g.name}: heuristic {run.heuristic}, budget {_mib(run.budget_bytes)} ({ratio:.3f} x unconstrained "
              f"peak {_mib(run.unconstrained_peak_bytes)}), {run.evictable_storages} evictable storages")
        print(f"status {run.status}: peak {_mib(run.peak_bytes)} (torch storages {_mib(run.tracked_peak_bytes)}), "
              f"{run.evictions} evictions, {run.eager_evictions} released, {run.recomputations} recomputations")
        print(f"overhead {run.overhead:.4f} (compute {run.compute_cost:.6g}, recompute {run.recompute_cost:.6g} "
              f"{run.cost_unit}), wall {run.wall_s:.3f} s")
        for e in run.events:
            print(f"  {e}")
        if args.verify:
            if mismatches:
                print(f"verify: {len(mismatches)} differ from eager memfit.run: {', '.join(mismatches[:10])}")
            else:
                print(f"verify: {len(ref)} outputs and {len(eager_sources)} sources bit-identical to eager "
                      f"memfit.run (eager wall {eager_s:.3f} s)")
    return 1 if mismatches else 0
