"""The CPU model's truth: the simulator with a measured cost table against the generated code, measured.

    PYTHONPATH=python:build/python nice /usr/bin/python3 python/bench/cpu_truth.py [--models resnet18 bert]
        [--ratio 0.8] [--repeats 9] [--threads 1] [--context step|alone]

For each model a training step (forward, loss, gradients, SGD update) is
captured and profiled into a cost table (memfit.profile: by default every op
timed inside the generated step of program order, --context step; each op
alone on recorded inputs with --context alone; --clock cpu by default; every
entry with its measured workspace_bytes unless --no-workspace). Two plans are
made: program order, and memfit.optimize at --ratio (default 0.8) of the peak
with that table (device "cpu": no swaps there).

Then --repeats rounds run, each: one instrumented step of program order (the
profiler's in-step samples, --context step) and one plain step of each plan,
so that the table and the steps it predicts are measured side by side under
the same load (the machine is shared). For each plan:

- sim ms: the simulator's step time with the table of the rounds (the
  in-step samples' medians, the first table's workspaces); "first" is the
  same with the table made before the plans (what memfit.optimize saw);
- measured: the generated code (memfit.compile_plan) run on generated
  sources, the mean (--stat) of the rounds, in this process's CPU time (one
  torch thread) and wall time; sim/meas divides by the CPU time (--clock
  wall: the wall time). glibc keeps freed memory (memfit.retain_cpu_memory)
  unless --glibc-default: by default it hands large freed blocks back to the
  OS and the next step page-faults them in again, more of them the larger the
  footprint (resnet18: about 4600 faults per step in program order, none for
  the plan at 0.8), which the simulator does not model;
- peaks: the simulator's (storages live, op workspace included); the
  executor's tracked storages (memfit.plan.execute); and the allocator's,
  counted as the simulator counts: the sources the step holds plus the
  highest running sum of torch.profiler's CPU allocations minus frees while
  the generated step runs (op temporaries included).

Models: torchvision resnet18 (batch 8, 64x64) and memfit.examples.TinyBert
(hidden 256, 4 layers, 4 heads, seq 128, batch 8, dropout 0.1), the sizes of
fit_speed.py.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

import memfit
from memfit.codegen import compile_plan
from memfit.executor import _Context, make_source
from memfit.plan import execute, program_order_plan
from memfit.profile import StepProfiler, profile
from memfit.report import allocator_peak_bytes


def make(name):
    import torchvision.models as tvm
    from memfit.examples import TinyBert

    g = torch.Generator().manual_seed(0)
    if name == "resnet18":
        return tvm.resnet18(num_classes=10), (torch.randn(8, 3, 64, 64, generator=g), torch.randint(0, 10, (8,)))
    if name == "bert":
        model = TinyBert(vocab=1000, hidden=256, heads=4, layers=4, seq=128, classes=3, dropout=0.1)
        return model, (torch.randint(0, 1000, (8, 128), generator=g), torch.randint(0, 3, (8,), generator=g))
    raise SystemExit(f"unknown model {name}")


def sources_of(compiled, seed=0):
    g = compiled.graph
    ctx = _Context(g)
    return [make_source(g, tid, seed, None, compiled.device, ctx) for tid in compiled.sources]


def source_bytes(values):
    seen, total = set(), 0
    for v in values:
        s = v.untyped_storage() if hasattr(v, "untyped_storage") else v.storage()
        key = s.data_ptr()
        if key not in seen:
            seen.add(key)
            total += s.nbytes()
    return total


def table_file(tmp, name, table):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump(table, f)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "bert"])
    parser.add_argument("--ratio", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stat", default="mean", choices=["mean", "median", "min"],
                        help="of the op samples and of the rounds' steps: mean (default), median, or min")
    parser.add_argument("--glibc-default", action="store_true",
                        help="leave glibc's malloc as it is (by default memfit.retain_cpu_memory() first: freed "
                             "memory kept, no page faults each step, which the simulator does not model)")
    parser.add_argument("--context", default="step", choices=["step", "alone"],
                        help="the cost table: ops timed inside the generated step (default) or each alone")
    parser.add_argument("--cold", action="store_true", help="with --context alone: caches evicted before each call")
    parser.add_argument("--op-repeats", type=int, default=5,
                        help="the first table: steps (--context step) or calls per op (alone); default 5")
    parser.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                        help="the cost table's clock (memfit.profile --clock; default cpu)")
    parser.add_argument("--no-workspace", action="store_true",
                        help="no measured workspace in the tables (the registry's estimate, as before)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.glibc_default and not memfit.retain_cpu_memory():
        print("retain_cpu_memory: not glibc, ignored", file=sys.stderr)
    mib = 1 << 20
    pick = {"mean": statistics.fmean, "median": statistics.median, "min": min}[args.stat]
    print(f"{'model':<9} {'plan':<14} {'first':>7} {'sim ms':>8} {'cpu ms':>8} {'wall ms':>8} {'sim/meas':>8} "
          f"{'sim MiB':>8} {'tracked':>8} {'ratio':>6} {'alloc':>8} {'ratio':>6}")
    for name in args.models:
        model, (x, y) = make(name)
        graph = memfit.capture(model, (x, y), loss_fn=lambda out, *_: F.cross_entropy(out, y),
                               num_module_inputs=1, optimizer="sgd").graph
        stat = args.stat if args.context == "step" or args.stat != "mean" else "median"
        first = profile(graph, device="cpu", warmup=2, repeats=args.op_repeats, clock=args.clock, stat=stat,
                        cold=args.cold, context=args.context, workspace=not args.no_workspace)
        with tempfile.TemporaryDirectory() as tmp:
            first_path = table_file(tmp, "first.json", first)
            plans = [("program order", program_order_plan(graph), graph)]
            try:
                res = memfit.optimize(graph, mem_limit_ratio=args.ratio, device="cpu", costs=first_path,
                                      deterministic=True)
                plans.append((f"memfit @{args.ratio:g}", res.plan, res.plan))
            except memfit.Error as e:
                print(f"{name:<9} memfit @{args.ratio:g}: {e}")
            compiled = [compile_plan(plan) for _, plan, _ in plans]
            values = [sources_of(c) for c in compiled]
            steps = StepProfiler(graph, device="cpu", clock=args.clock) if args.context == "step" else None
            cpu = [[] for _ in plans]
            wall = [[] for _ in plans]
            for c, v in zip(compiled, values):  # warm-up
                c(v)
            if steps is not None:
                steps.run()
            for _ in range(args.repeats):
                if steps is not None:
                    steps.run()
                for k, (c, v) in enumerate(zip(compiled, values)):
                    t_cpu, t_wall = time.process_time(), time.perf_counter()
                    c(v)
                    cpu[k].append((time.process_time() - t_cpu) * 1e3)
                    wall[k].append((time.perf_counter() - t_wall) * 1e3)
            if steps is not None:
                rounds = dict(first, entries=steps.entries(skip=1, stat=args.stat))
                print(f"{name:<9} in-step table: ops scaled by {steps.scale(skip=1):.3f} to the plain step")
                workspace = {(e["op"], e["overload"], json.dumps(e["input_shapes"]), e["dtype"]):
                             e.get("workspace_bytes") for e in first["entries"]}
                for e in rounds["entries"]:
                    w = workspace.get((e["op"], e["overload"], json.dumps(e["input_shapes"]), e["dtype"]))
                    if w is not None:
                        e["workspace_bytes"] = w
                rounds_path = table_file(tmp, "rounds.json", rounds)
            else:
                rounds_path = first_path
            for k, (label, plan, simulated) in enumerate(plans):
                sim = memfit.simulate(simulated, device="cpu", costs=rounds_path)
                sim_first = memfit.simulate(simulated, device="cpu", costs=first_path)
                cpu_ms, wall_ms = pick(cpu[k]), pick(wall[k])
                tracked = execute(plan, seed=0).peak_bytes
                alloc = allocator_peak_bytes(lambda: compiled[k](values[k])) + source_bytes(values[k])
                peak = sim["peak_bytes"]
                measured = cpu_ms if args.clock == "cpu" else wall_ms
                print(f"{name:<9} {label:<14} {sim_first['latency_ms']:>7.1f} {sim['latency_ms']:>8.1f} {cpu_ms:>8.1f} "
                      f"{wall_ms:>8.1f} {sim['latency_ms'] / measured:>8.3f} {peak / mib:>8.2f} {tracked / mib:>8.2f} "
                      f"{tracked / peak:>6.3f} {alloc / mib:>8.2f} {alloc / peak:>6.3f}")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
