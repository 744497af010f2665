"""memfit.fit on torchvision's classification and segmentation models: equal to eager, and how fast.

    PYTHONPATH=python:build/python /usr/bin/python3 python/bench/fit_zoo.py [--ratio 0.8 | --lat-ratio 1.1] [--steps 3]
        [--batch 2] [--image 64] [--only classification|segmentation] [--models a,b] [--skip a,b]
        [--fission] [--device rtx3090] [--json OUT.json]

Every classification and segmentation builder of torchvision 0.14 (the ones
capture_coverage.py builds, with its per-model sizes and options), batch 2,
64x64 images by default except where a model needs another size:

  maxvit_t        224x224 (its partition size 7 must divide every stage's grid);
  inception_v3    75x75, aux_logits=False (its smallest input);
  vit_*           image_size = the image (vit_h_14: 28, which its 14x14 patches divide);
  googlenet       aux_logits=False.

Classification models have 10 classes (cross entropy on the logits),
segmentation models (fcn_*, deeplabv3_*, lraspp_*) 3 classes, cross entropy
per pixel on out["out"]. Eager training and memfit.fit (SGD with momentum
0.9, lr 1e-2; the plan at --ratio of the simulated peak with the "cpu"
profile or --device's, or program order with --ratio 0; or with --lat-ratio R
the smallest memory within R times the simulated latency; --fission lets the
plan split ops, whose summed parts round differently from eager: "close") run --steps steps from the same
weights, data and seed. Where the limit cannot be met (the smallest peak
memfit reaches is above it), the model is planned at ratio 1.0 instead and
the row says so. A row gives the graph's ops, the simulated peak of program
order and of the plan, the verdict, and the step time against eager's: the
fastest of the steps after the first (the first memfit step plans; the
machine is shared, so the fastest is the least disturbed), wall clock and
this process's CPU time:

  equal    losses and the final state_dict torch.equal to eager's;
  close    not equal, but within 1e-4 of the largest value (the max relative
           difference is printed); with --fission, or within how far eager
           itself moves when its kernels sum in another order (the same steps
           with 2 threads instead of 1: googlenet at batch 8, 224x224, moves
           6.2e-3 after two steps, its split plan 1.3e-4);
  differs  more than that;
  failed   the memfit.Error (or exception) in the row;
  skipped  the model's parameters, their gradients and momentum, twice (eager
           and memfit), need more memory than the machine has available now
           (MemAvailable), or --skip names it.

One torch thread, and memfit.retain_cpu_memory() from the start, so that
eager steps run under the same malloc settings as memfit's (fit applies it).
Models run one at a time; eager's optimizer state and gradients are dropped
before memfit's step is planned.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import memfit  # noqa: E402
from capture_coverage import torchvision_cases  # noqa: E402

CLOSE = 1e-4  # relative to the largest value compared


def loss_of(out, y):
    """Cross entropy on the logits (classification) or on out["out"] per pixel (segmentation)."""
    if isinstance(out, dict):
        out = out["out"]
    return F.cross_entropy(out, y)


def available_bytes() -> float:
    """MemAvailable of /proc/meminfo (inf where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def needed_bytes(model: torch.nn.Module) -> float:
    """What a run holds at most, roughly: eager's and memfit's parameters, and one side's
    gradients and momentum buffers (eager's are dropped before memfit's step), plus 1 GiB."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    return 5 * n + 2**30


def max_relative_difference(want, got) -> float:
    """max |got - want| over the floating-point tensors / the largest |want|."""
    pairs = [(w, g) for w, g in zip(want, got) if w.is_floating_point() and w.numel()]
    scale = max((w.abs().max().item() for w, _ in pairs), default=0.0)
    worst = max(((g.double() - w.double()).abs().max().item() for w, g in pairs), default=0.0)
    return worst / scale if scale > 0 else worst


def run_model(case, args) -> dict:
    row = {"model": case.name, "set": case.group, "status": "failed", "why": ""}
    torch.manual_seed(0)
    model, inputs, _, k = case.build()
    x0, y0 = inputs
    row["params"] = sum(p.numel() for p in model.parameters())
    need, have = needed_bytes(model), available_bytes()
    if need > have:
        row["status"] = "skipped"
        row["why"] = (f"{row['params'] / 1e6:.0f}M parameters: needs ~{need / 2**30:.1f} GiB, "
                      f"{have / 2**30:.1f} GiB available")
        return row
    classes = 3 if case.group == "segmentation" else 10
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(x0.shape, generator=g), torch.randint(0, classes, y0.shape, generator=g))
            for _ in range(args.steps)]
    eager_model = copy.deepcopy(model)
    opt = torch.optim.SGD(eager_model.parameters(), lr=1e-2, momentum=0.9)
    torch.manual_seed(5)
    floor_model = copy.deepcopy(eager_model) if args.fission else None
    eager, te = [], []
    for x, y in data:
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad()
        loss = loss_of(eager_model(x), y)
        loss.backward()
        opt.step()
        te.append((time.perf_counter() - t0, time.process_time() - c0))
        eager.append(loss.detach())
    del opt, loss
    eager_model.zero_grad(set_to_none=True)
    want = list(eager_model.state_dict().values())
    if floor_model is not None:
        # A fission sums its parts in another order. How far does another summation
        # order take eager itself? The same steps with two threads (other reduction
        # orders in the kernels): memfit within that is rounding, not a wrong plan.
        fopt = torch.optim.SGD(floor_model.parameters(), lr=1e-2, momentum=0.9)
        torch.set_num_threads(2)
        torch.manual_seed(5)
        floor_losses = []
        for x, y in data:
            fopt.zero_grad()
            floor_loss = loss_of(floor_model(x), y)
            floor_loss.backward()
            fopt.step()
            floor_losses.append(floor_loss.detach())
        torch.set_num_threads(1)
        row["eager_spread"] = max(max_relative_difference(eager, floor_losses),
                                  max_relative_difference(want, list(floor_model.state_dict().values())))
        del fopt, floor_model, floor_losses, floor_loss

    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    if args.lat_ratio:
        kw = dict(lat_limit_ratio=args.lat_ratio, work_budget=args.work_budget)
    else:
        kw = {} if args.ratio == 0 else dict(mem_limit_ratio=args.ratio, work_budget=args.work_budget)
    if args.fission:
        kw["fission"] = True
    if args.device:
        kw["device"] = args.device
    try:
        step = memfit.fit(model, opt, loss_of, data[0], num_model_inputs=k, **kw)
    except memfit.Error as e:
        if "cannot be met" not in str(e):
            raise
        # "... the smallest memory memfit reaches is X" or, where plans fit by simulated
        # peak but do not pack, "... the smallest arena memfit packed is X".
        smallest = re.search(r"smallest (memory|arena|plan) (?:memfit|it) (?:reaches|reached within the \w+ budget|made in that budget|"
                             r"packed|made) (?:is|needs) ([\d.]+ \w+)", str(e))
        what = f"the smallest {smallest.group(1)} memfit reaches: {smallest.group(2)}" if smallest else str(e)[:80]
        row["why"] = f"ratio {args.ratio} unreachable ({what}), planned at 1.0; "
        kw["mem_limit_ratio"] = 1.0
        step = memfit.fit(model, opt, loss_of, data[0], num_model_inputs=k, **kw)
    torch.manual_seed(5)
    ours, tm = [], []
    for x, y in data:
        t0, c0 = time.perf_counter(), time.process_time()
        ours.append(step(x, y))
        tm.append((time.perf_counter() - t0, time.process_time() - c0))
    got = list(model.state_dict().values())
    row["ops"] = len(step.last.graph.ops)
    splits = [v for k, v in sorted(step.last.graph.metadata.items()) if k.startswith("fission.")]
    if splits:
        row["why"] += "split: " + "; ".join(splits) + "; "
    fig = step.last.figures
    if fig:
        row["sim_peak_mib"] = fig["original"]["peak_bytes"] / 2**20
        row["plan_peak_mib"] = fig["optimized"]["peak_bytes"] / 2**20
    later = slice(1, None) if len(data) > 1 else slice(None)
    row["eager_ms"], row["eager_cpu_ms"] = (min(t[j] for t in te[later]) * 1e3 for j in (0, 1))
    row["memfit_ms"], row["memfit_cpu_ms"] = (min(t[j] for t in tm[later]) * 1e3 for j in (0, 1))
    if all(torch.equal(a, b) for a, b in zip(eager, ours)) and all(torch.equal(a, b) for a, b in zip(want, got)):
        row["status"] = "equal"
    else:
        diff = max(max_relative_difference(eager, ours), max_relative_difference(want, got))
        row["max_rel_diff"] = diff
        row["status"] = "close" if diff <= max(CLOSE, row.get("eager_spread", 0.0)) else "differs"
        row["why"] += f"max relative difference {diff:.1e}"
        if "eager_spread" in row:
            row["why"] += f" (eager, 1 vs 2 threads: {row['eager_spread']:.1e})"
    return row


def fmt(row) -> str:
    def mib(key):
        return f"{row[key]:.1f}M" if key in row else "-"

    if row.get("eager_ms"):
        timing = (f"{row['eager_ms']:>9.1f} {row['memfit_ms']:>9.1f} {row['memfit_ms'] / row['eager_ms']:>5.2f} "
                  f"{row['memfit_cpu_ms'] / row['eager_cpu_ms']:>5.2f}")
    else:
        timing = f"{'':>31}"
    return (f"{row['model']:<30} {row.get('ops', ''):>5} {mib('sim_peak_mib'):>9} {mib('plan_peak_mib'):>9} "
            f"{row['status']:>7} {timing}  {row['why'].rstrip('; ')}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["classification", "segmentation"])
    ap.add_argument("--models", help="comma-separated names to run (default: all)")
    ap.add_argument("--skip", help="comma-separated names not to run (listed as skipped)")
    ap.add_argument("--ratio", type=float, default=0.8, help="memory limit ratio (0: program order, no limit)")
    ap.add_argument("--lat-ratio", type=float,
                    help="plan the smallest memory within this multiple of the simulated latency instead of --ratio")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--work-budget", type=int, default=100)
    ap.add_argument("--fission", action="store_true", help="let the plan split ops (memfit.fit(fission=True))")
    ap.add_argument("--device", help="the device profile to plan for (default: the run's, cpu)")
    ap.add_argument("--json", help="write the rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    memfit.retain_cpu_memory()
    cases = torchvision_cases(args.image, args.batch)
    import torchvision.models.segmentation as seg
    from torchvision.models._api import list_models

    segmentation = set(list_models(module=seg))
    for case in cases:
        case.group = "segmentation" if case.name in segmentation else "classification"
    if args.only:
        cases = [c for c in cases if c.group == args.only]
    if args.models:
        wanted = args.models.split(",")
        unknown = sorted(set(wanted) - {c.name for c in cases})
        if unknown:
            ap.error(f"unknown model(s): {', '.join(unknown)}")
        cases = [c for c in cases if c.name in wanted]
    skip = set(args.skip.split(",")) if args.skip else set()
    print(f"{'model':<30} {'ops':>5} {'sim peak':>9} {'plan':>9} {'verdict':>7} {'eager ms':>9} {'memfit ms':>9} "
          f"{'wall':>5} {'CPU':>5}  note", flush=True)
    rows = []
    for case in cases:
        t0 = time.perf_counter()
        if case.name in skip:
            row = {"model": case.name, "set": case.group, "status": "skipped", "why": "--skip"}
        else:
            try:
                row = run_model(case, args)
            except Exception as e:  # noqa: BLE001 - a row per model, whatever happens
                msg = str(e) if isinstance(e, memfit.Error) else f"{type(e).__name__}: {e}"
                row = {"model": case.name, "set": case.group, "status": "failed",
                       "why": (msg.strip().splitlines() or [""])[0][:160]}
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(fmt(row), flush=True)
    print()
    for group in ("classification", "segmentation"):
        mine = [r for r in rows if r["set"] == group]
        if not mine:
            continue
        counts = {s: sum(r["status"] == s for r in mine) for s in ("equal", "close", "differs", "failed", "skipped")}
        print(f"{group}: {len(mine)} models: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    timed = [r for r in rows if r.get("eager_ms")]
    if timed:
        print(f"memfit / eager step time (fastest step after the first), median over {len(timed)} models: "
              f"wall {statistics.median(r['memfit_ms'] / r['eager_ms'] for r in timed):.2f}, "
              f"CPU {statistics.median(r['memfit_cpu_ms'] / r['eager_cpu_ms'] for r in timed):.2f}")
    for r in rows:
        if r["status"] != "equal" or r["why"]:
            print(f"  {r['model']}: {r['status']}: {r['why'].rstrip('; ')}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
