"""Checks memfit's training graphs against PyTorch.

check_gradients runs the forward ops of a training graph built with
--no-update under torch.autograd (parameters require grad; memfit's own
backward ops run without recording), then compares every "<param>.grad" the
graph computed with torch.autograd.grad of the loss. Both use the same
forward values, so dropout masks agree by construction.

    python -m memfit.verify G.json [--dtype f64]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

from .executor import DTYPES, make_sources, run
from .graph import Error, Graph, load


def loss_tensor(g: Graph) -> int:
    """Id of the scalar loss: the graph output with role "output"."""
    candidates = [tid for tid in g.outputs if g.tensors[tid].role == "output"]
    if len(candidates) != 1:
        candidates = [t.id for t in g.tensors if t.role == "output"]
    if len(candidates) != 1:
        raise Error(f"graph '{g.name}' has {len(candidates)} tensors with role output; expected one loss")
    return candidates[0]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max(max |want|, tiny): one number per tensor."""
    scale = want.detach().abs().max().item() if want.numel() else 0.0
    diff = (got.detach().to(want.dtype) - want.detach()).abs().max().item() if want.numel() else 0.0
    return diff / max(scale, 1e-30) if scale > 0 else diff


@dataclass
class GradientCheck:
    loss: float
    errors: Dict[str, float] = field(default_factory=dict)  # param name -> relative error
    missing: list = field(default_factory=list)  # params autograd gives a gradient but the graph does not

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def worst(self) -> Optional[str]:
        return max(self.errors, key=self.errors.get) if self.errors else None


def check_gradients(graph, seed: int = 0, dtype: Optional[torch.dtype] = torch.float64,
                    fixed: Optional[Dict[str, torch.Tensor]] = None) -> GradientCheck:
    """Every parameter's gradient in `graph` (its backward ops) against
    torch.autograd's of its forward ops, from generated parameters. `fixed`
    gives sources that must hold their own values, by name (an imported
    model's attention mask: a random one may hide a whole row)."""
    g = load(graph)
    params = make_sources(g, seed=seed, dtype=dtype, roles=("parameter",))
    for p in params.values():
        p.requires_grad_(True)
    inputs = dict(params)
    for name, value in (fixed or {}).items():
        if name not in params:
            inputs[name] = value
    out = run(g, inputs, seed=seed, dtype=dtype, keep_all=True, phases=("forward", "backward"))
    loss = out[g.tensors[loss_tensor(g)].name]
    names = sorted(params)
    ref = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    result = GradientCheck(loss=loss.item())
    for name, want in zip(names, ref):
        got = out.get(name + ".grad")
        if want is None:
            if got is not None and got.abs().max().item() != 0:
                result.errors[name] = float("inf")
            continue
        if got is None:
            result.missing.append(name)
            continue
        result.errors[name] = relative_error(got, want)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memfit.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("graph", help="training graph JSON (memfit zoo NAME --train --no-update)")
    parser.add_argument("--dtype", default="f64", help="run floating tensors in this dtype (f64, f32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        r = check_gradients(args.graph, args.seed, DTYPES[args.dtype])
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name in sorted(r.errors):
        print(f"{r.errors[name]:.3e}  {name}")
    for name in r.missing:
        print(f"missing  {name}")
    print(f"loss {r.loss:.6g}, max relative error {r.max_error:.3e} ({r.worst()})")
    return 0 if not r.missing else 1


if __name__ == "__main__":
    sys.exit(main())
