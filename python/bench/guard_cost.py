"""Cost of checking a captured step's guards against the step itself.

    PYTHONPATH=python /usr/bin/python3 python/bench/guard_cost.py [--image 224] [--batch 8]

resnet18 (batch 8, CPU): the median of one eager training step (forward,
backward, SGD) against the median of Captured.check_guards on new inputs (only
input-shape guards: resnet18 reads no values). Then a sequence model whose
forward reads int(lengths.max()) (a value guard: the check evaluates the
captured ops the value depends on, one reduction on the lengths). For each,
also memfit.fit's lookup before a step (FitStep._entry: the input signature,
then the cached plan's guards).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import memfit  # noqa: E402


def median_seconds(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).train()
    x, y = torch.randn(args.batch, 3, args.image, args.image), torch.randint(0, 10, (args.batch,))
    cap = memfit.capture(model, (x, y), loss_fn=lambda out, x, y: F.cross_entropy(out, y), num_module_inputs=1,
                         fake=True)  # the guards need no run; fake keeps this quick
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    step_s = median_seconds(step, 5)
    x2, y2 = torch.randn_like(x), torch.randint(0, 10, (args.batch,))
    assert cap.guards_hold((x2, y2))
    check_s = median_seconds(lambda: cap.check_guards((x2, y2)), 2000)
    print(f"resnet18 batch {args.batch} {args.image}x{args.image}: step {step_s * 1e3:.1f} ms, check_guards "
          f"{check_s * 1e6:.1f} us ({len(cap.guards)} input guards) = {check_s / step_s:.4%} of the step")
    # memfit.fit's own lookup before each step: the input signature (shapes, dtypes, the
    # parameters' flags, train/eval, the optimizer's structure), then the plan's guards.
    import copy

    fitted = copy.deepcopy(model)
    fit_step = memfit.fit(fitted, torch.optim.SGD(fitted.parameters(), lr=1e-3), F.cross_entropy, (x, y))
    lookup_s = median_seconds(lambda: fit_step._entry((x2, y2)), 2000)
    print(f"  memfit.fit's lookup (signature + guards) {lookup_s * 1e6:.1f} us = {lookup_s / step_s:.4%} of the step")

    from capture_corpus import LengthMask

    torch.manual_seed(0)
    seq = LengthMask()
    xs, lengths = torch.randn(8, 64, 8), torch.randint(1, 65, (8,))
    lengths[0] = 64
    cap = memfit.capture(seq, (xs, lengths))
    sgd = torch.optim.SGD(seq.parameters(), lr=1e-3)

    def seq_step():
        sgd.zero_grad()
        seq(xs, lengths).backward()
        sgd.step()

    seq_step()
    step_s = median_seconds(seq_step, 50)
    lengths2 = torch.randint(1, 65, (8,))
    lengths2[3] = 64
    assert cap.guards_hold((xs, lengths2))
    check_s = median_seconds(lambda: cap.check_guards((xs, lengths2)), 500)
    print(f"length-mask model (8 x 64 x 8, one value guard): step {step_s * 1e3:.2f} ms, check_guards "
          f"{check_s * 1e6:.1f} us = {check_s / step_s:.2%} of the step")
    y8 = torch.randint(0, 8, (8,))
    fit_step = memfit.fit(seq, torch.optim.SGD(seq.parameters(), lr=1e-3),
                          lambda out, y: out, (xs, lengths, y8), num_model_inputs=2)
    lookup_s = median_seconds(lambda: fit_step._entry((xs, lengths2, y8)), 500)
    print(f"  memfit.fit's lookup (signature + the value guard) {lookup_s * 1e6:.1f} us = "
          f"{lookup_s / step_s:.2%} of the step")


if __name__ == "__main__":
    main()
