"""What live DTR may do with each storage of a graph, decided before it runs: sizes,
last uses, pinned storages, in-place writes and side effects (from the graph's
op flags and the ATen schemas' write marks), and the storages that may be
evicted and recomputed, with their deadlines (memfit.dtr's docstring gives the
rules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

import torch

from ..graph import Op, load
from ..runner import Context, op_flags, tensor_nbytes


@dataclass
class _Analysis:
    """Storages (named by their root tensor) and the rules of the module docstring."""

    root: List[int]  # per tensor
    size_bytes: Dict[int, int]  # per storage
    tensors_of: Dict[int, List[int]]  # storage -> its tensors, root first
    last_use: Dict[int, int]  # storage -> last op reading it (its producer when none; -1 for an unread source)
    pinned: Set[int]  # sources and storages of graph outputs
    writes: List[Set[int]]  # per op: storages written in place (side effects excluded)
    side_effects: List[List[int]]  # per op: input positions written as side effects (undone on recompute)
    recomputable: Set[int]  # storages that may be evicted and recomputed
    deadline: Dict[int, float]  # recomputable storage -> last op before which a recomputation is correct


def _written_inputs(ctx: Context, op: Op) -> Tuple[List[int], List[int]]:
    """Input positions `op` writes: (in place: marked (a!) in the ATen schema, or the
    inputs an `inplace` op's outputs alias; side effects: the inputs the op's flags
    say it `mutates` without an output, undone on recompute)."""
    g = ctx.g
    b = ctx.binding(op)
    args = {a.name: a for a in b.overload._schema.arguments}
    hard: List[int] = []
    for name, positions in b.tensor_args:
        info = args[name].alias_info
        if info is not None and info.is_write:
            hard.extend(positions)
    if op.flags.inplace:
        written = {g.storage_root(t) for t in op.outputs if g.tensors[t].alias_of is not None}
        hard.extend(k for k, t in enumerate(op.inputs) if g.storage_root(t) in written and k not in hard)
    side = [k for k in dict.fromkeys(op.flags.mutates) if k not in hard]
    return hard, side


def analyze(graph, dtype: Optional[torch.dtype] = None, ctx: Optional[Context] = None) -> _Analysis:
    """Storages, sizes, last uses, in-place writes and the recomputable storages of `graph`."""
    g = load(graph)
    ctx = ctx or Context(g)
    op_flags(g, "live DTR")
    root = [g.storage_root(t.id) for t in g.tensors]
    tensors_of: Dict[int, List[int]] = {}
    for t in g.tensors:
        tensors_of.setdefault(root[t.id], []).append(t.id)
    size_bytes = {r: tensor_nbytes(g, r, dtype) for r in tensors_of}
    sources = {r for r in tensors_of if g.tensors[r].producer is None}
    pinned = sources | {root[t] for t in g.outputs}

    last_use: Dict[int, int] = {r: (-1 if r in sources else g.tensors[r].producer) for r in tensors_of}
    writes: List[Set[int]] = []
    side_effects: List[List[int]] = []
    written_at: Dict[int, List[int]] = {}
    for op in g.ops:
        for tid in op.inputs:
            last_use[root[tid]] = max(last_use[root[tid]], op.id)
        hard, side = _written_inputs(ctx, op)
        w = {root[op.inputs[p]] for p in hard}
        if hard:
            # An in-place op's results alias what it writes; count them as written too.
            w |= {root[t] for t in op.outputs if g.tensors[t].alias_of is not None}
        writes.append(w)
        side_effects.append(side)
        for r in sorted(w | {root[op.inputs[p]] for p in side}):
            written_at.setdefault(r, []).append(op.id)

    # One pass in program order. deadline[r]: the last op before whose run rerunning r's producer
    # still reads what its first run read (no input storage written in between; every input
    # storage resident or itself recomputable until then). r is recomputable when its own last use
    # is within its deadline; every recomputable storage computed from r then has a deadline no
    # later than r's, so r is never needed for a recomputation past its deadline either.
    first_write_after = lambda z, p: min((w for w in written_at.get(z, ()) if w > p), default=math.inf)  # noqa: E731
    recomputable: Set[int] = set()
    deadline: Dict[int, float] = {}
    for r in sorted(tensors_of, key=lambda r: (g.tensors[r].producer is None, g.tensors[r].producer or 0, r)):
        p = g.tensors[r].producer
        if p is None or r in pinned or writes[p] or r in written_at:
            continue
        op = g.ops[p]
        side = set(side_effects[p])
        d = math.inf
        for k, tid in enumerate(op.inputs):
            z = root[tid]
            if k in side or z == r:
                continue
            d = min(d, first_write_after(z, p))
            if z in pinned:
                continue
            d = min(d, deadline[z] if z in recomputable else last_use[z])
        if last_use[r] <= d:
            recomputable.add(r)
            deadline[r] = d
    return _Analysis(root, size_bytes, tensors_of, last_use, pinned, writes, side_effects, recomputable, deadline)


def unconstrained_peak_bytes(graph, dtype: Optional[torch.dtype] = None, analysis: Optional[_Analysis] = None) -> int:
    """The peak of the graph in program order without a budget, from its declared sizes: the most
    bytes resident right after an op allocates its new storages, every source resident throughout
    (pinned, as in the DTR run), every other storage freed after its last use unless it holds a
    graph output. This is the DTR run's own peak with an unlimited budget, so budget_ratio=1.0 runs
    without evictions. (memfit simulate's program-order peak also frees inputs such as images and
    labels after their last use, so it can be a little lower.)"""
    g = load(graph)
    a = analysis or analyze(g, dtype)
    keep = a.pinned
    free_at: Dict[int, List[int]] = {}
    memory = 0
    for r, size in a.size_bytes.items():
        if g.tensors[r].producer is None:
            memory += size
        if r not in keep:
            free_at.setdefault(a.last_use[r], []).append(r)
    peak = memory
    for r in free_at.get(-1, []):
        memory -= a.size_bytes[r]
    for op in g.ops:
        memory += sum(a.size_bytes[t] for t in dict.fromkeys(op.outputs) if a.root[t] == t)
        peak = max(peak, memory)
        for r in free_at.get(op.id, []):
            memory -= a.size_bytes[r]
    return peak
