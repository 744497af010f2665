"""What a graph break costs: a step that reads a value, run by memfit.fit as one
specialized graph (guards checked each step) and with graph breaks
(specialize=False: memfit.segments), against eager PyTorch.

    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/breaks_cost.py [--repeats 5] [--ratio 0.7]
        [--models resnet18 bert]

The models read a value at the top of their forward, as real programs do:
  resnet18  torchvision resnet18 (batch 8, 64x64) behind `if x.abs().max() > 100: x = x / 100`;
  bert      memfit.examples.TinyBert (hidden 256, 4 layers, seq 64, batch 8) behind
            `ids[:, :int(lengths.max())]` (every length 64 here, so one plan);
  mlp-mid   8 tanh layers of 512 (batch 64) whose weights the top-level forward uses
            itself, with `if x.abs().max() > 100` after the fourth: its breaks are at
            the op (memfit.op_breaks), not at modules.
Both memfit steps get the same byte limit, --ratio of the whole step's simulated
program-order peak. Per model: the median step time of eager, of the specialized plan and of the
segmented step (milliseconds, the three run alternately on their own copies),
the segments, and memory as the planner sees it: the whole step's simulated
program-order peak and planned peak, and for the segmented step the largest
fixed bytes + planned segment peak (module docstring of memfit.segments).
Segmented steps recompute each segment's forward in its backward: expect about
one more forward.
"""

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.examples import TinyBert


class Clipped(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        if x.abs().max() > 100:
            x = x / 100
        return self.net(x)


class Trimmed(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, ids, lengths):
        return self.net(ids[:, :int(lengths.max())])


class MidRead(nn.Module):
    def __init__(self, width=512, depth=8):
        super().__init__()
        self.ws = nn.ParameterList([nn.Parameter(torch.randn(width, width) / width ** 0.5) for _ in range(depth)])
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        for i, w in enumerate(self.ws):
            x = torch.tanh(x @ w)
            if i == len(self.ws) // 2 - 1 and x.abs().max() > 100:
                x = x / 100
        return self.head(x)


def make(name):
    import torchvision.models as tvm

    g = torch.Generator().manual_seed(0)
    if name == "resnet18":
        return Clipped(tvm.resnet18(num_classes=10)), (torch.randn(8, 3, 64, 64, generator=g),
                                                       torch.randint(0, 10, (8,), generator=g)), 1
    if name == "bert":
        net = TinyBert(vocab=1000, hidden=256, heads=4, layers=4, seq=64, classes=3, dropout=0.1)
        return Trimmed(net), (torch.randint(0, 1000, (8, 64), generator=g), torch.full((8,), 64),
                              torch.randint(0, 3, (8,), generator=g)), 2
    if name == "mlp-mid":
        return MidRead(), (torch.randn(64, 512, generator=g), torch.randint(0, 10, (64,), generator=g)), 1
    raise SystemExit(f"unknown model {name}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "bert"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ratio", type=float, default=0.8, help="mem_limit_ratio of both memfit steps")
    args = parser.parse_args(argv)
    print(f"{'model':<10} {'eager ms':>9} {'whole ms':>9} {'breaks ms':>9}  {'whole peak MB':>13} "
          f"{'planned':>8}  {'breaks fixed+planned MB':>23}  segments")
    for name in args.models:
        torch.manual_seed(0)
        model, inputs, k = make(name)
        runs = {}
        steps = {}
        for kind in ("eager", "whole", "breaks"):
            m = copy.deepcopy(model)
            opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
            if kind == "eager":
                def step(m=m, opt=opt):
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(m(*inputs[:k]), inputs[-1]).backward()
                    opt.step()
            else:
                # The same byte limit for both: --ratio of the whole step's program-order peak.
                limit = ({"mem_limit_ratio": args.ratio} if kind == "whole" else
                         {"mem_limit": int(args.ratio * steps["whole"].last.figures["original"]["peak_bytes"])})
                try:
                    step = memfit.fit(m, opt, F.cross_entropy, inputs, num_model_inputs=k, work_budget=50,
                                      specialize=kind == "whole", **limit)
                except memfit.Error as e:
                    print(f"{name:<10} {kind}: {str(e).splitlines()[0]}")
                    continue
                steps[kind] = step
                step = (lambda s=step: s(*inputs))
            step()  # warm-up
            runs[kind] = step
        times = {kind: [] for kind in runs}
        for _ in range(args.repeats):
            for kind, step in runs.items():  # alternating: the machine's load hits all three alike
                t0 = time.perf_counter()
                step()
                times[kind].append(time.perf_counter() - t0)
        med = {kind: 1e3 * statistics.median(t) for kind, t in times.items()}
        whole = steps["whole"].last
        seg = steps["breaks"].last.step if "breaks" in steps else None
        worst = max(p.fixed_bytes + p.figures["optimized"]["peak_bytes"] for p in seg.plans.values()) if seg else 0
        print(f"{name:<10} {med['eager']:9.1f} {med['whole']:9.1f} {med.get('breaks', float('nan')):9.1f}  "
              f"{whole.figures['original']['peak_bytes'] / 1e6:13.1f} {whole.figures['optimized']['peak_bytes'] / 1e6:8.1f}"
              f"  {worst / 1e6:23.1f}  {seg.describe() if seg else '-'}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
