"""memfit.fit's generated step against eager PyTorch: step time per model.

    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/fit_speed.py [--repeats 7] [--ratios 1.0 0.77]
        [--models resnet18 resnet50 bert vit_b_16] [--threads N] [--retain-cpu-memory] [--swap]

For each model, an eager training step (zero_grad, forward, loss, backward,
optimizer.step()) and memfit.fit's step (the generated code of the plan
memfit.optimize makes at each --ratios value of the step's simulated peak,
device profile "cpu") run alternately on their own copies of the model and
optimizer (SGD with momentum), after one warm-up step each; the table gives
the median of --repeats timed steps of each (wall time, and this process's
CPU time, which other load on a shared machine disturbs less when torch runs
one thread), and memfit's over eager's; "min ratio" is the ratio of the
fastest CPU times of each (interference only adds time).
Planning figures: graph ops, the simulated peak of program order and of the
plan, and what the plan does (recomputed ops, swapped storages). The models:
torchvision resnet18 and resnet50 (batch 8 / 4, 64x64), a BERT-style encoder
(memfit.examples.TinyBert: hidden 256, 4 layers, 4 heads, seq 128, batch 8,
dropout 0.1) and torchvision vit_b_16 (image 112, batch 2). The machine is
shared: medians of alternating runs, not means.
"""

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import memfit
from memfit.examples import TinyBert


def make(name):
    """(model, inputs) with a batch small enough for a few minutes on 2 cores."""
    import torchvision.models as tvm

    g = torch.Generator().manual_seed(0)
    if name == "resnet18":
        return tvm.resnet18(num_classes=10), (torch.randn(8, 3, 64, 64, generator=g), torch.randint(0, 10, (8,)))
    if name == "resnet50":
        return tvm.resnet50(num_classes=10), (torch.randn(4, 3, 64, 64, generator=g), torch.randint(0, 10, (4,)))
    if name == "bert":
        model = TinyBert(vocab=1000, hidden=256, heads=4, layers=4, seq=128, classes=3, dropout=0.1)
        return model, (torch.randint(0, 1000, (8, 128), generator=g), torch.randint(0, 3, (8,), generator=g))
    if name == "vit_b_16":
        return (tvm.vit_b_16(image_size=112, num_classes=10),
                (torch.randn(2, 3, 112, 112, generator=g), torch.randint(0, 10, (2,))))
    raise SystemExit(f"unknown model {name}")


def optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)


def eager_step(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def timed(fn):
    """(wall seconds, CPU seconds of this process): on a shared machine the CPU time is the steadier one."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "bert", "vit_b_16"])
    ap.add_argument("--ratios", nargs="+", type=float, default=[1.0, 0.77])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--work-budget", type=int, default=200, help="memfit.optimize's work budget (deterministic)")
    ap.add_argument("--swap", action="store_true",
                    help="let the plans swap (memfit.fit plans a CPU model without swapping: it would free nothing)")
    ap.add_argument("--retain-cpu-memory", action="store_true",
                    help="memfit.retain_cpu_memory() first: glibc keeps freed memory (for eager too); without it fit is "
                         "called with retain_cpu_memory=False, so that both run on glibc's default")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    retained = args.retain_cpu_memory and memfit.retain_cpu_memory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} steps"
          f"{', freed memory retained (mallopt)' if retained else ''}")
    print(f"{'model':<10} {'ratio':>5} {'ops':>5} {'sim peak':>10} {'plan peak':>10} {'recomp':>6} {'swaps':>5} "
          f"{'eager ms':>9} {'memfit ms':>9} {'wall ratio':>10} {'eager cpu':>9} {'memfit cpu':>10} {'cpu ratio':>9} "
          f"{'min ratio':>9}")
    for name in args.models:
        torch.manual_seed(0)
        base, (x, y) = make(name)
        base.train()
        for ratio in args.ratios:
            m_eager, m_fit = copy.deepcopy(base), copy.deepcopy(base)
            o_eager, o_fit = optimizer(m_eager), optimizer(m_fit)
            try:
                step = memfit.fit(m_fit, o_fit, F.cross_entropy, (x, y), mem_limit_ratio=ratio, device="cpu",
                                  work_budget=args.work_budget, retain_cpu_memory=args.retain_cpu_memory,
                                  **({"swap": True} if args.swap else {}))
            except memfit.Error as e:
                print(f"{name:<10} {ratio:>5.2f}  infeasible: {e}")
                continue
            e = step.last
            kinds = {}
            for s in e.plan.steps:
                kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
            eager_step(m_eager, o_eager, x, y)
            step(x, y)  # warm-up
            te, tf = [], []
            for _ in range(args.repeats):
                te.append(timed(lambda: eager_step(m_eager, o_eager, x, y)))
                tf.append(timed(lambda: step(x, y)))
            me, mf = statistics.median(t[0] for t in te), statistics.median(t[0] for t in tf)
            ce, cf = statistics.median(t[1] for t in te), statistics.median(t[1] for t in tf)
            # Interference only adds time: the ratio of the fastest steps is the least disturbed one.
            least = min(t[1] for t in tf) / min(t[1] for t in te)
            orig, opt = e.figures["original"], e.figures["optimized"]
            print(f"{name:<10} {ratio:>5.2f} {len(e.graph.ops):>5} {orig['peak_bytes'] / 2**20:>8.1f}Mi "
                  f"{opt['peak_bytes'] / 2**20:>8.1f}Mi {kinds.get('recompute', 0):>6} {kinds.get('swap_out', 0):>5} "
                  f"{me * 1e3:>9.1f} {mf * 1e3:>9.1f} {mf / me:>10.3f} {ce * 1e3:>9.1f} {cf * 1e3:>10.1f} "
                  f"{cf / ce:>9.3f} {least:>9.3f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
