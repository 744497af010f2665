"""Values for the source tensors of a graph (parameters, buffers, inputs,
optimizer states) when the caller does not give them: generated
deterministically from a seed and the tensor's name. Integer inputs are drawn
in the range their consumer accepts (embedding rows, nll_loss classes),
BatchNorm running variances are positive, Adam's second moments non-negative.
"""

from __future__ import annotations

import zlib
from typing import Dict, Iterable, Optional

import torch

from .graph import SOURCE_ROLES, Error, Graph, load
from .runner import DTYPES, FLOATING, Context


def _generator(seed: int, name: str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
    return g


# View-like ops through which an index tensor keeps its meaning.
_PASS_THROUGH = {"aten.view", "aten._unsafe_view", "aten.reshape", "aten.unsqueeze", "aten.squeeze", "aten.expand",
                 "aten.alias", "aten.detach", "aten.clone", "aten.t", "aten.permute", "aten.transpose", "aten.slice",
                 "aten.select", "aten._to_copy"}


def index_range(ctx: Context, tid: int, depth: int = 0) -> Optional[int]:
    """Exclusive upper bound for an integer tensor from its consumers."""
    g = ctx.g
    for oid in ctx.consumers[tid]:
        op = g.ops[oid]
        try:
            arg = ctx.arg_name(op, tid)
        except Error:
            continue
        shape = lambda name: g.tensors[op.inputs[dict(ctx.binding(op).tensor_args)[name][0]]].shape  # noqa: E731
        if op.type == "aten.embedding" and arg == "indices":
            return shape("weight")[0]
        if op.type in ("aten.nll_loss_forward", "aten.nll_loss2d_forward", "aten.nll_loss") and arg == "target":
            s = shape("self")
            return s[1] if len(s) >= 2 else s[0]
        if op.type in ("aten.cross_entropy_loss",) and arg == "target":
            s = shape("self")
            return s[1] if len(s) >= 2 else s[0]
        if op.type in ("aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_") \
                and arg == "indices":
            b = ctx.binding(op)
            positions = dict(b.tensor_args)["indices"]
            entries = (b.list_entries or {}).get("indices") or [1] * len(positions)
            k = next(i for i, p in enumerate(positions) if op.inputs[p] == tid)
            dim = [e for e, present in enumerate(entries) if present][k]
            s = shape("self")
            if dim < len(s):
                return s[dim]
        if op.type in ("aten.index_select", "aten.gather") and arg == "index":
            dim = op.attrs.get("dim", 0)
            return shape("self")[dim]
        if op.type in _PASS_THROUGH and depth < 8:
            for out in op.outputs:
                r = index_range(ctx, out, depth + 1)
                if r is not None:
                    return r
    return None


def make_source(g: Graph, tid: int, seed: int = 0, dtype: Optional[torch.dtype] = None, device="cpu",
                _ctx: Optional[Context] = None) -> torch.Tensor:
    """A deterministic value for source tensor `tid` (see the module docstring)."""
    t = g.tensors[tid]
    ctx = _ctx or Context(g)
    gen = _generator(seed, t.name)
    shape = list(t.shape)
    declared = DTYPES[t.dtype]
    is_float = t.dtype in FLOATING
    target = dtype if (dtype is not None and is_float) else declared
    if t.values:  # known (an imported integer constant)
        value = torch.tensor(t.values, dtype=declared).reshape(shape)
    elif t.dtype == "bool":
        value = torch.rand(shape, generator=gen) < 0.5
    elif not is_float:
        high = index_range(ctx, tid) or 2
        value = torch.randint(0, max(high, 1), shape, generator=gen, dtype=declared)
    else:
        name = t.name.rsplit(".", 1)[-1]
        if t.role == "buffer":
            if "var" in name:
                value = torch.rand(shape, generator=gen, dtype=torch.float32) + 0.5
            else:
                value = torch.randn(shape, generator=gen, dtype=torch.float32) * 0.1
        elif t.role == "optimizer_state":
            if name.endswith("exp_avg_sq"):
                value = torch.rand(shape, generator=gen, dtype=torch.float32) * 1e-3
            else:
                value = torch.randn(shape, generator=gen, dtype=torch.float32) * 1e-2
        elif t.role == "parameter":
            if len(shape) <= 1:
                # Norm scales around 1, biases small.
                base = 1.0 if name in ("weight", "gamma", "scale") else 0.0
                value = base + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float32)
            else:
                fan_in = 1
                for d in shape[1:]:
                    fan_in *= d
                value = torch.randn(shape, generator=gen, dtype=torch.float32) / max(fan_in, 1) ** 0.5
        else:
            value = torch.randn(shape, generator=gen, dtype=torch.float32)
    return value.to(dtype=target, device=device)


def make_sources(graph, seed: int = 0, dtype: Optional[torch.dtype] = None, device="cpu",
                 roles: Iterable[str] = SOURCE_ROLES) -> Dict[str, torch.Tensor]:
    """Deterministic values for every source tensor of `graph` with a role in `roles`, by name."""
    g = load(graph)
    ctx = Context(g)
    roles = set(roles)
    return {t.name: make_source(g, t.id, seed, dtype, device, ctx) for t in g.tensors
            if t.producer is None and t.alias_of is None and t.role in roles}
