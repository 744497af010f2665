"""memfit.fit on torchvision's classification models: equal to eager, and how fast.

    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/fit_zoo.py [--models resnet18 ...]
        [--ratio 0.8] [--steps 2] [--batch 2] [--image 64]

For each model (all of torchvision.models' classification builders by
default), eager training and memfit.fit (SGD with momentum, plan at --ratio
of the simulated peak, "cpu" profile; program order with --ratio 0) run
--steps steps from the same weights and seed; the table gives the graph's
ops, the simulated peak of program order and of the plan, whether the losses
and the final state_dict are torch.equal to eager's, and the last step's
time against eager's. A failure prints its memfit.Error (or exception) in
the row.
"""

import argparse
import copy
import sys
import time

import torch
import torch.nn.functional as F

import memfit


def classification_models():
    import torchvision.models as tvm

    names = []
    for name in sorted(dir(tvm)):
        fn = getattr(tvm, name)
        if name.startswith("_") or not callable(fn) or name[0].isupper() or name.startswith("get_"):
            continue
        if name in ("list_models", "get_model", "get_weight", "get_model_weights", "get_model_builder"):
            continue
        names.append(name)
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--ratio", type=float, default=0.8, help="memory limit ratio (0: program order, no limit)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--work-budget", type=int, default=100)
    args = ap.parse_args(argv)
    import torchvision.models as tvm

    names = args.models or classification_models()
    print(f"{'model':<22} {'ops':>5} {'sim peak':>9} {'plan':>9} {'equal':>5} {'eager ms':>9} {'memfit ms':>9}  note")
    equal_count = 0
    for name in names:
        try:
            torch.manual_seed(0)
            try:
                base = getattr(tvm, name)(num_classes=10)
            except TypeError:
                continue  # not a classification builder
            image = 299 if name == "inception_v3" else args.image
            if name.startswith("vit"):
                base = getattr(tvm, name)(num_classes=10, image_size=args.image)
            base.train()
            g = torch.Generator().manual_seed(1)
            data = [(torch.randn(args.batch, 3, image, image, generator=g), torch.randint(0, 10, (args.batch,),
                                                                                        generator=g))
                    for _ in range(args.steps)]
            m1, m2 = copy.deepcopy(base), copy.deepcopy(base)
            o1 = torch.optim.SGD(m1.parameters(), lr=1e-2, momentum=0.9)
            o2 = torch.optim.SGD(m2.parameters(), lr=1e-2, momentum=0.9)

            def loss_of(out, y):
                if isinstance(out, tuple):  # inception / googlenet aux outputs in train mode
                    out = out[0]
                if hasattr(out, "logits"):
                    out = out.logits
                return F.cross_entropy(out, y)

            kw = {} if args.ratio == 0 else dict(mem_limit_ratio=args.ratio, work_budget=args.work_budget)
            step = memfit.fit(m2, o2, loss_of, data[0], **kw)
            torch.manual_seed(5)
            eager, te = [], 0.0
            for x, y in data:
                t0 = time.perf_counter()
                o1.zero_grad()
                loss = loss_of(m1(x), y)
                loss.backward()
                o1.step()
                te = time.perf_counter() - t0
                eager.append(loss.detach())
            torch.manual_seed(5)
            ours, tm = [], 0.0
            for x, y in data:
                t0 = time.perf_counter()
                ours.append(step(x, y))
                tm = time.perf_counter() - t0
            same = all(torch.equal(a, b) for a, b in zip(eager, ours)) and all(
                torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
            equal_count += same
            fig = step.last.figures
            peak = fig["original"]["peak_bytes"] / 2**20 if fig else float("nan")
            plan = fig["optimized"]["peak_bytes"] / 2**20 if fig else float("nan")
            print(f"{name:<22} {len(step.last.graph.ops):>5} {peak:>8.1f}M {plan:>8.1f}M {str(same):>5} "
                  f"{te * 1e3:>9.1f} {tm * 1e3:>9.1f}", flush=True)
        except Exception as e:  # a row per model, whatever happens
            msg = str(e).splitlines()[0][:150]
            print(f"{name:<22} {'':>5} {'':>9} {'':>9} {'':>5} {'':>9} {'':>9}  {type(e).__name__}: {msg}", flush=True)
    print(f"{equal_count} of {len(names)} equal to eager")


if __name__ == "__main__":
    sys.exit(main())
