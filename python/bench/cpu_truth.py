"""The CPU model's truth: the simulator with a measured cost table against the generated code, measured.

    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/cpu_truth.py [--models resnet18 bert]
        [--ratio 0.6] [--repeats 7] [--threads 1]

For each model a training step (forward, loss, gradients, SGD update) is
captured, every op is timed on this CPU (memfit.profile: median of
--op-repeats calls after 2 warm-up calls, in this process's CPU time by default:
--clock; --stat min for the least disturbed call, --cold to evict the caches
before each call) into a cost table, and two plans are made: program
order, and memfit.optimize at --ratio (default 0.8) of the peak with that table (device
"cpu": no swaps there). For each plan:

- simulated: the simulator's step time and peak with the cost table;
  sim/meas is its time over the measured step's (CPU time, or wall with
  --clock wall);
- measured: the generated code (memfit.compile_plan) run on generated sources,
  median (--stat) of --repeats steps after one warm-up, as this process's CPU time
  (with one torch thread: the machine is shared, and CPU time is what other
  load disturbs least) and wall time; the peak as the executor's tracked
  storages (memfit.plan.execute: the distinct storages alive after each
  step, sources included, which is what the simulator counts) and as the
  allocator's (torch.profiler's CPU allocations and frees while the generated
  step runs, plus the sources it holds: op temporaries included).

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
from memfit.profile import profile
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


def time_step(compiled, values, repeats, stat):
    """(CPU ms, wall ms) of compiled(values) after one warm-up: `stat` of the repeats."""
    compiled(values)
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        compiled(values)
        cpu.append((time.process_time() - c) * 1e3)
        wall.append((time.perf_counter() - w) * 1e3)
    pick = min if stat == "min" else statistics.median
    return pick(cpu), pick(wall)


def source_bytes(values):
    seen, total = set(), 0
    for v in values:
        s = v.untyped_storage() if hasattr(v, "untyped_storage") else v.storage()
        key = s.data_ptr()
        if key not in seen:
            seen.add(key)
            total += s.nbytes()
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "bert"])
    parser.add_argument("--ratio", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stat", default="median", choices=["median", "min"],
                        help="of the op calls and of the steps: median (default), or min (the least disturbed)")
    parser.add_argument("--retain-cpu-memory", action="store_true",
                        help="memfit.retain_cpu_memory() first: glibc keeps freed memory (no page faults each step)")
    parser.add_argument("--cold", action="store_true", help="profile the ops with cold caches (memfit.profile --cold)")
    parser.add_argument("--op-repeats", type=int, default=5, help="calls per op in the cost table (default 5)")
    parser.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                        help="the cost table's clock (memfit.profile --clock; default cpu)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.retain_cpu_memory and not memfit.retain_cpu_memory():
        print("retain_cpu_memory: not glibc, ignored", file=sys.stderr)
    mib = 1 << 20
    print(f"{'model':<9} {'plan':<14} {'sim ms':>8} {'cpu ms':>8} {'wall ms':>8} {'sim/meas':>8} {'sim MiB':>8} "
          f"{'tracked':>8} {'ratio':>6} {'alloc':>8} {'ratio':>6}")
    for name in args.models:
        model, (x, y) = make(name)
        graph = memfit.capture(model, (x, y), loss_fn=lambda out, *_: F.cross_entropy(out, y),
                               num_module_inputs=1, optimizer="sgd").graph
        table = profile(graph, device="cpu", warmup=2, repeats=args.op_repeats, clock=args.clock, stat=args.stat,
                        cold=args.cold)
        with tempfile.TemporaryDirectory() as tmp:
            costs = os.path.join(tmp, "costs.json")
            with open(costs, "w") as f:
                json.dump(table, f)
            plans = [("program order", program_order_plan(graph), graph)]
            try:
                res = memfit.optimize(graph, mem_limit_ratio=args.ratio, device="cpu", costs=costs, deterministic=True)
                plans.append((f"memfit @{args.ratio:g}", res.plan, res.plan))
            except memfit.Error as e:
                print(f"{name:<9} memfit @{args.ratio:g}: {e}")
            for label, plan, simulated in plans:
                sim = memfit.simulate(simulated, device="cpu", costs=costs)
                compiled = compile_plan(plan)
                values = sources_of(compiled)
                cpu_ms, wall_ms = time_step(compiled, values, args.repeats, args.stat)
                tracked = execute(plan, seed=0).peak_bytes
                alloc = allocator_peak_bytes(lambda: compiled(values)) + source_bytes(values)
                peak = sim["peak_bytes"]
                print(f"{name:<9} {label:<14} {sim['latency_ms']:>8.1f} {cpu_ms:>8.1f} {wall_ms:>8.1f} "
                      f"{sim['latency_ms'] / (cpu_ms if args.clock == 'cpu' else wall_ms):>8.3f} {peak / mib:>8.2f} {tracked / mib:>8.2f} "
                      f"{tracked / peak:>6.3f} {alloc / mib:>8.2f} {alloc / peak:>6.3f}")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
