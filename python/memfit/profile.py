"""Measures every op of a graph with PyTorch into a memfit cost table.

    python3 -m memfit.profile GRAPH.json --device cpu|cuda -o COSTS.json [--warmup 3] [--repeats 10] [--clock cpu]
    memfit simulate GRAPH.json --device cpu --costs COSTS.json

Two ways to time the ops (--context):

- step (the default): the graph's program order is compiled into the
  generated step (memfit.compile_plan, as memfit.fit runs it) with a clock
  read around every op's code, and the whole step runs `warmup` times, then
  `repeats` times. Every op is timed where it really runs: its inputs in
  whatever cache state the ops before it left them, its outputs allocated from
  the allocator as the step leaves it, on the step's threads, and with the
  generated code's own per-op cost (the Python line, the dispatcher). Views
  are timed too: the generated code pays for them. The cost of reading the
  clock (calibrated on empty timed blocks) is taken off every sample. Each
  run also times one plain step (no clock reads inside), and the samples are
  scaled so that the ops add up to it (StepProfiler.scale: the frees and the
  clock reads' disturbance, spread over the ops in proportion). An
  entry's latency_us is the mean over all its samples (every op with that key,
  every run; `samples` says how many): means add up, so the table's sum over
  the step's ops is the mean step, where medians of the parts fall short of
  the median of the whole on a loaded machine (each step has some disturbed
  ops; --stat median or min still pick those). The step updates its parameters
  in place as it runs (the sources are generated values).
- alone: the graph runs once (memfit.run, keep_all) to give every op real
  inputs; each distinct key is called `warmup` times, then `repeats` calls
  are timed one by one (optionally with the caches evicted before each,
  --cold) and their median (or --stat min) is written. Pure views are left
  out (the simulator costs them zero). An in-place op runs on its recorded
  inputs again, which changes their values but not the op's time. The
  median of the calls is written by default.

A cost-table key is (op type, overload, shapes of its tensor inputs in graph
order, op dtype; docs/sim.md). The clock is the wall clock by default (the
device synchronized around each op on CUDA); --clock cpu (CPU device only)
times in this process's CPU time instead, which a shared machine's other load
does not inflate (an op waiting for a core is not charged) — exact for torch
running one thread (--threads 1), the sum over threads otherwise.

Workspace: every entry also gets workspace_bytes, the scratch the op
allocates and frees while it runs (oneDNN's reordered copies and
temporaries on the CPU), measured on one call of the op on its recorded
inputs: the highest allocated total during the call minus what is still
allocated after it (its outputs). On the CPU that is torch.profiler's
allocation records, on CUDA the caching allocator's peak statistics. The
simulator counts it in place of the registry's estimate (docs/sim.md), so the
simulated peak is the allocator's, temporaries included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

from .codegen import compile_plan
from .executor import FLOATING, _Context, call_overload, op_kwargs, run
from .graph import Error, Graph, Op, load
from .plan import is_plan, load_plan, program_order_plan
from .sources import make_source


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


STATS = {"mean": statistics.fmean, "median": statistics.median, "min": min}
CONTEXTS = ("step", "alone")
COLD_BYTES = 64 << 20  # larger than the last-level cache of the machines memfit is run on


def _workspace_bytes(call, cuda: bool) -> int:
    """The scratch bytes of one call(): the highest total allocated during it minus
    the total still allocated after it (its outputs), never negative."""
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        out = call()
        torch.cuda.synchronize()
        peak, after = torch.cuda.max_memory_allocated(), torch.cuda.memory_allocated()
        del out
        return max(0, peak - after)
    return allocation_peak_and_end(call)[2]


def allocation_peak_and_end(fn) -> Tuple[int, int, int]:
    """(peak, end, peak - end): the running sum of the CPU allocations minus frees
    while fn() runs (torch.profiler's memory records, in time order): its highest
    value and its value at the end (what fn's results still hold)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    records = sorted((e.start_us(), i, e.nbytes()) for i, e in enumerate(prof.profiler.kineto_results.events())
                     if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    current = peak = 0
    for _, _, nbytes in records:
        current += nbytes
        peak = max(peak, current)
    return peak, current, max(0, peak - current)


def _clock_cost(now, n: int = 2001) -> float:
    """The median of an empty timed block's reading with clock `now` (seconds): what
    the generated step's clock reads add to every sample."""
    samples = []
    for _ in range(n):
        t = now()
        samples.append(now() - t)
    return statistics.median(samples)


class StepProfiler:
    """Times every op of `graph` inside the generated step of its program order
    (module docstring, "step"). run() runs one instrumented step and one plain
    step; entries() gives the cost-table entries of the runs so far, less the
    first `skip` of them."""

    def __init__(self, graph, *, device: str = "cpu", clock: str = "wall", seed: int = 0):
        if clock not in CLOCKS:
            raise Error(f"clock '{clock}': expected wall or cpu")
        g = load_plan(graph).graph if is_plan(graph) else load(graph)
        dev = torch.device(device)
        if clock == "cpu" and dev.type != "cpu":
            raise Error(f"clock cpu times the CPU; device '{device}' runs its ops elsewhere (use the wall clock)")
        base = CLOCKS[clock]
        if dev.type == "cuda":
            def now() -> float:
                torch.cuda.synchronize(dev)
                return base()
        else:
            now = base
        self.now = now
        self.graph = g
        self.plan = program_order_plan(g)
        self.compiled = compile_plan(self.plan, device=dev, timer=now)
        self.plain = compile_plan(self.plan, device=dev)
        ctx = _Context(g)
        self.values = [make_source(g, tid, seed, None, dev, ctx) for tid in self.compiled.sources]
        self.clock_cost = _clock_cost(now)
        self.plain_s: List[float] = []  # the plain steps' times
        self.runs = 0

    def run(self) -> None:
        """One step with every op timed, then one plain step, timed whole."""
        self.compiled(self.values)
        start = self.now()
        self.plain(self.values)
        self.plain_s.append(self.now() - start)
        self.runs += 1

    def _op_sums(self, skip: int) -> List[float]:
        """Per run after the first `skip`: the seconds of its timed ops, clock cost taken off."""
        sums = [0.0] * max(0, self.runs - skip)
        for i, step in enumerate(self.plan.steps):
            if step["kind"] == "compute":
                for r, t in enumerate(self.compiled.step_times[i][skip:]):
                    sums[r] += max(0.0, t - self.clock_cost)
        return sums

    def scale(self, skip: int = 0) -> float:
        """The plain steps' mean time over the instrumented steps' mean sum of op times
        (after the first `skip` runs): what the ops' samples are multiplied by, so that
        the table adds up to the plain step. It folds in what no op block times (the
        frees, the function's entry) and what the clock reads do to the ops around
        them (a system call each: on a loaded machine, more preemption and cache
        refills); near 1 on a quiet one."""
        sums = self._op_sums(skip)
        if not sums or sum(sums) <= 0:
            return 1.0
        return statistics.fmean(self.plain_s[skip:]) / statistics.fmean(sums)

    def samples(self, skip: int = 0) -> Dict[Tuple, List[float]]:
        """Microseconds by cost-table key from the runs after the first `skip`: the
        clock's own cost taken off, times scale(skip)."""
        g = self.graph
        factor = self.scale(skip)
        by_key: Dict[Tuple, List[float]] = {}
        for i, step in enumerate(self.plan.steps):
            times = self.compiled.step_times[i]
            if step["kind"] != "compute" or not times:
                continue
            key = cost_key(g, g.ops[step["op"]])
            by_key.setdefault(key, []).extend(max(0.0, t - self.clock_cost) * factor * 1e6 for t in times[skip:])
        return by_key

    def entries(self, skip: int = 0, stat: str = "mean") -> List[Dict[str, Any]]:
        if stat not in STATS:
            raise Error(f"stat '{stat}': expected mean, median or min")
        out = []
        for key, samples in self.samples(skip).items():
            if samples:
                out.append({"op": key[0], "overload": key[1], "input_shapes": [list(x) for x in key[2]],
                            "dtype": key[3], "latency_us": STATS[stat](samples), "samples": len(samples)})
        return out


def _alone_entries(g: Graph, values_by_id, device: str, warmup: int, repeats: int, now, stat: str,
                   cold: bool) -> List[Dict[str, Any]]:
    scratch = torch.empty(COLD_BYTES, dtype=torch.uint8, device=device) if cold else None
    ctx = _Context(g)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    entries: List[Dict[str, Any]] = []
    seen = set()
    for op in g.ops:
        key = cost_key(g, op)
        if key in seen or is_pure_view(g, op):
            continue
        seen.add(key)
        b, kwargs = op_kwargs(ctx, op, _fetcher(g, op, values_by_id), None, device)
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
    return entries


def _fetcher(g: Graph, op: Op, values_by_id):
    def fetch(tid: int) -> torch.Tensor:
        if tid not in values_by_id:
            raise Error(f"op '{op.name}': no recorded value for input '{g.tensors[tid].name}'")
        return values_by_id[tid]
    return fetch


def workspaces(g: Graph, values_by_id, device: str) -> Dict[Tuple, int]:
    """The measured workspace bytes of every distinct cost-table key of `g` (one
    call each, on the recorded inputs), pure views 0."""
    ctx = _Context(g)
    cuda = torch.device(device).type == "cuda"
    out: Dict[Tuple, int] = {}
    for op in g.ops:
        key = cost_key(g, op)
        if key in out:
            continue
        if is_pure_view(g, op):
            out[key] = 0
            continue
        b, kwargs = op_kwargs(ctx, op, _fetcher(g, op, values_by_id), None, device)
        call_overload(op, b.overload, kwargs)  # warm: lazy initialisations are no workspace
        out[key] = _workspace_bytes(lambda: call_overload(op, b.overload, kwargs), cuda)
    return out


def recorded_values(g: Graph, device: str, seed: int = 0) -> Dict[int, torch.Tensor]:
    """Every tensor of one run of `g` (memfit.run, keep_all), by id: the ops' real inputs."""
    values = run(g, seed=seed, device=device, keep_all=True)
    return {t.id: values[t.name] for t in g.tensors if t.name in values}


def profile(graph, *, device: str = "cpu", warmup: int = 3, repeats: int = 10, seed: int = 0,
            clock: str = "wall", stat: Optional[str] = None, cold: bool = False, context: str = "step",
            workspace: bool = True) -> Dict[str, Any]:
    """The cost table (a dict in the memfit.costs format) of every op of `graph` on
    `device` (module docstring). context: "step" (every op timed inside the
    generated step of program order, `warmup` untimed steps then `repeats`) or
    "alone" (each distinct op called alone); clock: "wall", or "cpu" (this
    process's CPU time; CPU device only); stat: "mean", "median" or "min" (the
    least disturbed) of the samples, by default the mean in a step and the
    median alone; cold (alone only): before each timed call, write a
    buffer larger than the caches (COLD_BYTES, untimed); workspace: measure every
    entry's workspace_bytes."""
    if stat is None:
        stat = "mean" if context == "step" else "median"
    if stat not in STATS:
        raise Error(f"stat '{stat}': expected mean, median or min")
    if repeats < 1 or warmup < 0:
        raise Error("repeats must be at least 1 and warmup non-negative")
    if clock not in CLOCKS:
        raise Error(f"clock '{clock}': expected wall or cpu")
    if context not in CONTEXTS:
        raise Error(f"context '{context}': expected step or alone")
    if cold and context != "alone":
        raise Error("cold evicts the caches before an op timed alone: use it with context alone")
    if clock == "cpu" and torch.device(device).type != "cpu":
        raise Error(f"clock cpu times the CPU; device '{device}' runs its ops elsewhere (use the wall clock)")
    g = load_plan(graph).graph if is_plan(graph) else load(graph)
    values = recorded_values(g, device, seed) if (workspace or context == "alone") else {}
    if context == "step":
        try:
            steps = StepProfiler(g, device=device, clock=clock, seed=seed)
        except Error as e:
            raise Error(f"{e} (context step compiles the graph's program order; context alone times each op "
                        f"by itself)") from None
        for _ in range(warmup + repeats):
            steps.run()
        entries = steps.entries(skip=warmup, stat=stat)
    else:
        entries = _alone_entries(g, values, device, warmup, repeats, CLOCKS[clock], stat, cold)
    if workspace:
        measured = workspaces(g, values, device)
        for e in entries:
            key = (e["op"], e["overload"], tuple(tuple(x) for x in e["input_shapes"]), e["dtype"])
            e["workspace_bytes"] = int(measured.get(key, 0))
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
    parser.add_argument("--stat", choices=sorted(STATS),
                        help="of each op's samples: mean (the default in a step), median (the default alone), "
                             "or min (the least disturbed)")
    parser.add_argument("--retain-cpu-memory", action="store_true",
                        help="memfit.retain_cpu_memory() first (glibc keeps freed memory: no page faults in the "
                             "ops' times); use it when the steps the table predicts run so")
    parser.add_argument("--context", default="step", choices=CONTEXTS,
                        help="step (default): every op timed inside the generated step of program order; "
                             "alone: each distinct op called alone on recorded inputs")
    parser.add_argument("--cold", action="store_true",
                        help="with --context alone: evict the caches before each timed call")
    parser.add_argument("--no-workspace", action="store_true",
                        help="do not measure the ops' workspace bytes (the simulator keeps the registry's estimate)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (the step to compare should use the same)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            print("error: --threads must be at least 1", file=sys.stderr)
            return 1
        torch.set_num_threads(args.threads)
    if args.retain_cpu_memory:
        from .fit import retain_cpu_memory
        if not retain_cpu_memory():
            print("warning: --retain-cpu-memory: not glibc, ignored", file=sys.stderr)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device", file=sys.stderr)
        return 1
    try:
        table = profile(args.graph, device=args.device, warmup=args.warmup, repeats=args.repeats, seed=args.seed,
                        clock=args.clock, stat=args.stat, cold=args.cold, context=args.context,
                        workspace=not args.no_workspace)
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with open(args.output, "w") as f:
        json.dump(table, f, indent=1)
        f.write("\n")
    total = sum(e["latency_us"] for e in table["entries"])
    print(f"wrote {args.output}: {len(table['entries'])} entries, {total / 1e3:.3f} ms summed over distinct keys "
          f"({args.device}, {args.context}, {args.clock} clock, {args.stat or 'default stat'}, {args.repeats} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
