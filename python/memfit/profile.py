"""Measures every op of a graph with PyTorch into a memfit cost table.

    python3 -m memfit.profile GRAPH.json --device cpu|cuda -o COSTS.json [--warmup 3] [--repeats 10] [--clock cpu]
    memfit simulate GRAPH.json --device cpu --costs COSTS.json

The graph runs once (memfit.run, keep_all) to give every op real inputs; then
each distinct cost-table key (op type, overload, shapes of its tensor inputs in
graph order, op dtype; docs/sim.md) is timed once: `warmup` calls, then
`repeats` calls each timed alone (the device synchronized around it on CUDA),
and the median is written as latency_us with samples = repeats. The clock is
the wall clock by default; --clock cpu (CPU device only) times each call in
this process's CPU time instead, which a shared machine's other load does not
inflate (a call waiting for a core is not charged) — exact for torch running
one thread (torch.set_num_threads(1), --threads 1), the sum over threads
otherwise. Pure views
(every output aliases an input and the op is not in-place) are left out: the
simulator costs them zero anyway. An in-place op runs on its recorded inputs
again, which changes their values but not the op's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

from .executor import FLOATING, _Context, call_overload, op_kwargs, run
from .graph import Error, Graph, Op, load
from .plan import is_plan, load_plan


def op_dtype(g: Graph, op: Op) -> str:
    """The cost-table dtype (sim::OpDType): first floating input, else first input, else first output, else f32."""
    for tid in op.inputs:
        if g.tensors[tid].dtype in FLOATING:
            return g.tensors[tid].dtype
    if op.inputs:
        return g.tensors[op.inputs[0]].dtype
    if op.outputs:
        return g.tensors[op.outputs[0]].dtype
    return "f32"


def cost_key(g: Graph, op: Op) -> Tuple[str, str, Tuple[Tuple[int, ...], ...], str]:
    return (op.type, op.overload or "default", tuple(tuple(g.tensors[t].shape) for t in op.inputs), op_dtype(g, op))


def is_pure_view(g: Graph, op: Op) -> bool:
    return bool(op.outputs) and not op.type.endswith("_") and all(
        g.tensors[t].alias_of is not None for t in op.outputs)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


STATS = {"median": statistics.median, "min": min}
COLD_BYTES = 64 << 20  # larger than the last-level cache of the machines memfit is run on


def profile(graph, *, device: str = "cpu", warmup: int = 3, repeats: int = 10, seed: int = 0,
            clock: str = "wall", stat: str = "median", cold: bool = False) -> Dict[str, Any]:
    """The cost table (a dict in the memfit.costs format) of every op of `graph` on
    `device`; clock: "wall", or "cpu" (this process's CPU time; CPU device only);
    stat: "median" of the repeats, or "min" (the least disturbed call); cold: before
    each timed call, write a buffer larger than the caches (COLD_BYTES, untimed), so
    that the op reads its inputs from memory as in a whole step, not from the cache
    its previous call warmed."""
    if stat not in STATS:
        raise Error(f"stat '{stat}': expected median or min")
    if repeats < 1 or warmup < 0:
        raise Error("repeats must be at least 1 and warmup non-negative")
    if clock not in CLOCKS:
        raise Error(f"clock '{clock}': expected wall or cpu")
    if clock == "cpu" and torch.device(device).type != "cpu":
        raise Error(f"clock cpu times the CPU; device '{device}' runs its ops elsewhere (use the wall clock)")
    now = CLOCKS[clock]
    scratch = torch.empty(COLD_BYTES, dtype=torch.uint8, device=device) if cold else None
    g = load_plan(graph).graph if is_plan(graph) else load(graph)
    values = run(g, seed=seed, device=device, keep_all=True)
    by_id = {t.id: values[t.name] for t in g.tensors if t.name in values}
    ctx = _Context(g)
    cuda = torch.device(device).type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    entries: List[Dict[str, Any]] = []
    seen = set()
    for op in g.ops:
        key = cost_key(g, op)
        if key in seen or is_pure_view(g, op):
            continue
        seen.add(key)

        def fetch(tid: int, op=op) -> torch.Tensor:
            if tid not in by_id:
                raise Error(f"op '{op.name}': no recorded value for input '{g.tensors[tid].name}'")
            return by_id[tid]

        b, kwargs = op_kwargs(ctx, op, fetch, None, device)
        for _ in range(warmup):
            call_overload(op, b.overload, kwargs)
        samples = []
        for r in range(repeats):
            if scratch is not None:
                scratch.fill_(r & 0xFF)
            sync()
            start = now()
            call_overload(op, b.overload, kwargs)
            sync()
            samples.append((now() - start) * 1e6)
        entries.append({"op": op.type, "overload": key[1], "input_shapes": [list(s) for s in key[2]],
                        "dtype": key[3], "latency_us": STATS[stat](samples), "samples": repeats})
    return {"format": "memfit.costs", "version": 1, "device": device, "entries": entries}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m memfit.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("graph", help="graph (or plan) JSON")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("-o", "--output", required=True, help="cost table JSON to write")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="wall (default), or cpu: this process's CPU time (CPU device; steady on a shared machine)")
    parser.add_argument("--stat", default="median", choices=sorted(STATS),
                        help="median of the repeats (default), or min: the least disturbed call")
    parser.add_argument("--cold", action="store_true",
                        help="evict the caches before each timed call (ops then read their inputs from memory, "
                             "as in a whole step)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (the step to compare should use the same)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            print("error: --threads must be at least 1", file=sys.stderr)
            return 1
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device", file=sys.stderr)
        return 1
    try:
        table = profile(args.graph, device=args.device, warmup=args.warmup, repeats=args.repeats, seed=args.seed,
                        clock=args.clock, stat=args.stat, cold=args.cold)
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with open(args.output, "w") as f:
        json.dump(table, f, indent=1)
        f.write("\n")
    total = sum(e["latency_us"] for e in table["entries"])
    print(f"wrote {args.output}: {len(table['entries'])} entries, {total / 1e3:.3f} ms summed over distinct keys "
          f"({args.device}, {args.clock} clock, {args.stat} of {args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
