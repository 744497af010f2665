"""Capture coverage: every torchvision 0.14 classification and segmentation
constructor, and a corpus of small modules with real-code idioms
(python/bench/capture_corpus.py), captured with memfit.capture, validated by
the C++ registry (`memfit validate`), run with memfit.run and compared with
eager PyTorch.

    PYTHONPATH=python /usr/bin/python3 python/bench/capture_coverage.py [--only torchvision|corpus]
        [--models resnet18,swin_t] [--max-params 400e6] [--fake] [--json OUT.json]

Prints one row per program and the totals:
  whole    captured as one graph, runs, gradients equal eager's;
  breaks   captured with graph breaks (memfit.segments): the whole step does
           not capture, or it reads values and --no-specialize is given; the
           segmented step's loss and gradients are compared with eager's;
  failed   why (capture / validate / run / mismatch: the error's first line).
Gradients are compared as max |memfit - eager| over every gradient divided
by the largest eager gradient magnitude (tolerance 1e-4). Models with more
parameters than --max-params are captured with fake tensors only (no run,
no gradient check; "fake-only").

Opaque ops (not in memfit's registry) are listed per program: they run, but
the planners see them without shape rules or dimension links.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import memfit  # noqa: E402
from memfit.report import find_cli  # noqa: E402
from memfit.verify import relative_error  # noqa: E402

GRAD_TOL = 1e-4


@dataclass
class Case:
    name: str
    build: Callable[[], Tuple[torch.nn.Module, tuple, Optional[Callable], Optional[int]]]
    group: str = "torchvision"


@dataclass
class Result:
    name: str
    group: str
    status: str  # whole / breaks / failed / fake-only
    why: str = ""
    grad_error: Optional[float] = None
    opaque: List[str] = field(default_factory=list)
    guards: int = 0
    seconds: float = 0.0
    params: int = 0


_REGISTERED = None


def registered_ops(cli: Optional[str]) -> Optional[set]:
    global _REGISTERED
    if _REGISTERED is None and cli:
        out = subprocess.run([cli, "ops"], capture_output=True, text=True, check=True).stdout
        _REGISTERED = {line.split()[0] for line in out.splitlines() if line.strip()}
    return _REGISTERED


# ---- torchvision --------------------------------------------------------------


def _classification(name: str, image: int, batch: int, **kwargs):
    import torchvision.models as tvm

    def build():
        torch.manual_seed(0)
        model = getattr(tvm, name)(num_classes=10, **kwargs).train()
        x = torch.randn(batch, 3, image, image)
        y = torch.randint(0, 10, (batch,))
        return model, (x, y), lambda out, x, y: F.cross_entropy(out, y), 1
    return build


def _segmentation(name: str, image: int, batch: int):
    import torchvision.models.segmentation as seg

    def build():
        torch.manual_seed(0)
        model = getattr(seg, name)(num_classes=3, weights_backbone=None).train()
        x = torch.randn(batch, 3, image, image)
        y = torch.randint(0, 3, (batch, image, image))
        return model, (x, y), lambda out, x, y: F.cross_entropy(out["out"], y), 1
    return build


def torchvision_cases(image: int = 32, batch: int = 2) -> List[Case]:
    import torchvision.models as tvm
    import torchvision.models.segmentation as seg
    from torchvision.models._api import list_models

    cases = []
    for name in list_models(module=tvm):
        size, kwargs = image, {}
        if name == "alexnet":
            size = max(image, 64)  # three stride-2 max pools after a stride-4 conv
        elif name == "inception_v3":
            size, kwargs = max(image, 75), {"aux_logits": False, "init_weights": False}
        elif name == "googlenet":
            kwargs = {"aux_logits": False, "init_weights": False}
        elif name.startswith("vit_"):
            size = 28 if name == "vit_h_14" else image
            kwargs = {"image_size": size}
        elif name == "maxvit_t":
            size = 224  # partition size 7 at every stage
            kwargs = {"input_size": (224, 224)}
        cases.append(Case(name, _classification(name, size, batch, **kwargs)))
    for name in list_models(module=seg):
        cases.append(Case(name, _segmentation(name, image, batch)))
    return cases


# ---- checking ---------------------------------------------------------------------


def grad_error(got: dict, want: dict) -> float:
    """max |got - want| over every gradient / the largest |want| (inf when a gradient is missing)."""
    scale = max((w.abs().max().item() for w in want.values() if w.numel()), default=0.0)
    worst = 0.0
    for k, w in want.items():
        if k not in got:
            return float("inf")
        if w.numel():
            worst = max(worst, (got[k].detach().to(w.dtype) - w).abs().max().item())
    return worst / scale if scale > 0 else worst


def segmented_error(model, inputs, loss_fn, k) -> Tuple[float, str]:
    """(max relative error of the loss and gradients of the step run with graph breaks
    against eager, the segments) -- memfit.segments with program-order plans."""
    from memfit.op_breaks import segmented_step

    k = len(inputs) if k is None else k

    def loss_of(out, xs):
        if loss_fn is not None:
            return loss_fn(out, *xs)
        if isinstance(out, torch.Tensor):
            return out if out.dim() == 0 else out.sum()
        return sum(t.sum() for t in torch.utils._pytree.tree_flatten(out)[0]
                   if isinstance(t, torch.Tensor) and t.is_floating_point())

    params = list(model.parameters())
    start = {n: t.detach().clone() for n, t in list(model.named_parameters()) + list(model.named_buffers())}
    torch.manual_seed(0)
    want_loss = loss_of(model(*inputs[:k]), inputs)
    want = torch.autograd.grad(want_loss, params, allow_unused=True)
    with torch.no_grad():
        for n, t in list(model.named_parameters()) + list(model.named_buffers()):
            t.copy_(start[n])
    seg = segmented_step(model, loss_of, inputs, k, planner=lambda g, limit: (memfit.plan.program_order_plan(g), {}))
    torch.manual_seed(0)
    loss, grads = seg.run(inputs)
    err = relative_error(loss, want_loss.detach())
    got = {i: g for i, g in enumerate(grads) if g is not None}
    err = max(err, grad_error(got, {i: w for i, w in enumerate(want) if w is not None}))
    return err, seg.describe()


def check(case: Case, cli: Optional[str], max_params: float, tmp: Path, all_fake: bool = False,
          specialize: bool = True) -> Result:
    t0 = time.perf_counter()
    try:
        torch.manual_seed(0)
        model, inputs, loss_fn, k = case.build()
    except Exception as e:  # noqa: BLE001 - a constructor failure is a row, not a crash
        return Result(case.name, case.group, "failed", f"construct: {type(e).__name__}: {e}".splitlines()[0])
    n_params = sum(p.numel() for p in model.parameters())
    res = Result(case.name, case.group, "failed", params=n_params)
    fake = all_fake or n_params > max_params
    stage = "capture"
    try:
        cap = memfit.capture(model, inputs, loss_fn=loss_fn, name=case.name, num_module_inputs=k, fake=fake)
        res.guards = len(getattr(cap, "value_guards", []) or [])
        g = cap.graph
        filled = sum(t.name.startswith("_memfit_filled") for t in g.tensors)
        if filled:
            res.why = f"{filled} tensors C++ filled without dispatch baked as constants"
        known = registered_ops(cli)
        if known is not None:
            res.opaque = sorted({op.type for op in g.ops} - known)
        if cli:
            stage = "validate"
            path = tmp / f"{case.name}.json"
            memfit.save(g, path)
            v = subprocess.run([cli, "validate", str(path)], capture_output=True, text=True)
            path.unlink()
            if v.returncode != 0 or not v.stdout.startswith("ok"):
                raise memfit.Error((v.stdout + v.stderr).strip().splitlines()[-1])
        if fake:
            res.status = "fake-only"
            res.why = "" if all_fake else \
                f"{n_params / 1e6:.0f}M parameters > --max-params: captured with fake tensors, not run"
        else:
            stage = "run"
            out = memfit.run(g, cap.inputs)
            stage = "compare"
            err = grad_error(out, cap.grads)
            loss = out[g.tensors[g.outputs[0]].name]
            err = max(err, relative_error(loss, cap.loss))
            res.grad_error = err
            if err <= GRAD_TOL:
                res.status = "whole"
            else:
                res.why = f"mismatch: gradients differ from eager by {err:.2e} of the largest"
            if res.guards and not specialize:
                stage = "breaks"
                raise _Break("--no-specialize")
    except Exception as e:  # noqa: BLE001
        msg = f"{type(e).__name__}: {e}" if not isinstance(e, memfit.Error) else str(e)
        res.why = f"{stage}: " + (msg.strip().splitlines() or [""])[0][:160]
        if os.environ.get("MEMFIT_COVERAGE_TRACE"):
            traceback.print_exc()
        if stage in ("capture", "breaks") and not fake:
            # The step as segments joined by eager glue (memfit.segments).
            try:
                err, segments = segmented_error(model, inputs, loss_fn, k)
                res.grad_error = err
                res.status = "breaks" if err <= GRAD_TOL else "failed"
                res.why = (f"{segments}" if err <= GRAD_TOL else
                           f"mismatch with breaks: gradients differ from eager by {err:.2e}") + \
                    (f" (whole: {msg.strip().splitlines()[0][:80]})" if stage == "capture" else "")
            except Exception as e2:  # noqa: BLE001
                res.status = "failed"
                res.why += f"; with breaks: {type(e2).__name__}: {str(e2).splitlines()[0][:100] if str(e2) else ''}"
    res.seconds = time.perf_counter() - t0
    return res


class _Break(Exception):
    pass


def print_table(results: Sequence[Result], out=None, totals: bool = True, header: bool = True) -> None:
    out = out or sys.stdout
    w = 30
    if header:
        print(f"{'program':<{w}}  {'status':<9}  {'grad err':>9}  {'s':>6}  notes", file=out)
    for r in results:
        err = "-" if r.grad_error is None else f"{r.grad_error:.1e}"
        notes = r.why
        if r.guards:
            notes = (notes + f"; {r.guards} value guards").lstrip("; ")
        if r.opaque:
            notes = (notes + "; opaque: " + ",".join(o.replace("aten.", "") for o in r.opaque)).lstrip("; ")
        print(f"{r.name:<{w}}  {r.status:<9}  {err:>9}  {r.seconds:6.1f}  {notes}", file=out)
    for group in sorted({r.group for r in results}) if totals else []:
        rs = [r for r in results if r.group == group]
        counts = {s: sum(r.status == s for r in rs) for s in ("whole", "breaks", "fake-only", "failed")}
        equal = sum(r.grad_error is not None and r.grad_error <= GRAD_TOL for r in rs)
        opaque = sum(bool(r.opaque) for r in rs)
        print(f"{group}: {len(rs)} programs: {counts['whole']} whole, {counts['breaks']} with breaks, "
              f"{counts['fake-only']} fake-only, {counts['failed']} failed; gradients equal eager {equal}/"
              f"{len(rs) - counts['fake-only'] - sum(r.why.startswith(('capture', 'construct', 'validate')) for r in rs)}"
              f"; {opaque} with opaque ops", file=out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["torchvision", "corpus"])
    parser.add_argument("--models", help="comma-separated names to run (default: all)")
    parser.add_argument("--max-params", type=float, default=400e6)
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--fake", action="store_true", help="capture every program with fake tensors only "
                        "(meta kernels and memfit's shape rules; nothing is run)")
    parser.add_argument("--no-specialize", action="store_true", help="a program that reads values runs with "
                        "graph breaks (memfit.fit(..., specialize=False)) instead of a guarded whole graph")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases: List[Case] = []
    if args.only in (None, "torchvision"):
        cases += torchvision_cases(args.image, args.batch)
    if args.only in (None, "corpus"):
        from capture_corpus import corpus_cases
        cases += corpus_cases()
    if args.models:
        wanted = set(args.models.split(","))
        cases = [c for c in cases if c.name in wanted]
    cli = find_cli()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            r = check(case, cli, args.max_params, Path(tmp), args.fake, not args.no_specialize)
            results.append(r)
            print_table([r], totals=False, header=not results[:-1])  # progress, one row at a time
            sys.stdout.flush()
    print()
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
