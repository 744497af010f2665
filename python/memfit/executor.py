"""Runs a memfit graph for real with PyTorch's ATen operators (``memfit.run``).

Ops run in program order through the shared op runner (memfit.runner, which
says how an op's inputs and attributes bind to its ATen schema). In-place ops
(``aten.add_``) mutate their input, so an optimizer update really changes the
parameter tensors passed in. A tensor is dropped after its last use unless it
is a graph output (or keep_all is set), so torch's allocator sees the graph's
real lifetimes.

Source tensors (parameters, buffers, inputs, optimizer states) are taken from
``inputs`` by name, or generated deterministically from ``seed`` and the
tensor's name (memfit.sources).

The names other modules used to import from here (bind, DTYPES, op_kwargs,
make_source, ...) are re-exported from memfit.runner and memfit.sources.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch

from .graph import Error, Op, load
from .plan import execute, is_plan
from .runner import (DTYPE_NAMES, DTYPES, FLOATING, LAYOUTS, MEMORY_FORMAT_NAMES, MEMORY_FORMATS,  # noqa: F401
                     Binding, Context, OpRunner, bind, call_overload, check_results, invoke, op_kwargs,
                     outputs_by_name, resolve_overload, take_inputs, tensor_nbytes)
from .sources import make_source, make_sources  # noqa: F401

_Context = Context  # the old private name (memfit.profile)


def run(
    graph,
    inputs: Optional[Mapping[str, torch.Tensor]] = None,
    *,
    seed: int = 0,
    dtype: Optional[torch.dtype] = None,
    device: Optional[str] = None,
    phases: Optional[Sequence[str]] = None,
    keep_all: bool = False,
    generate: bool = True,
    check: bool = True,
    grad_phases: Sequence[str] = ("forward",),
    arena: bool = False,
) -> Dict[str, torch.Tensor]:
    """Executes `graph` (path, JSON dict or Graph) and returns tensors by name.

    inputs: tensors by name. Usually sources (parameters, buffers, inputs,
        optimizer states), but any tensor may be given: an op whose outputs
        are all given is skipped (this is how a backward pass runs on a
        recorded forward). In-place ops mutate the given tensors.
    seed: seeds the generated sources and torch's RNG (dropout).
    dtype: run every floating-point tensor in this dtype (torch.float64 for
        gradient checks); given inputs are converted (then not mutated).
    device: where generated sources live ("cpu" by default; given inputs stay
        where they are).
    phases: run only the ops of these phases ("forward", "backward",
        "optimizer"); all by default.
    keep_all: return every tensor computed, not only the graph's outputs.
    generate: create missing sources; when False a missing source is an error.
    check: compare each result's shape and dtype with the graph's declaration.
    grad_phases: when an input requires grad, autograd records only the ops of
        these phases (so a forward can be differentiated by torch.autograd
        while memfit's own backward ops run without recording).

    The result holds the graph outputs by tensor name (the loss,
    "<param>.grad", updated parameters), and for in-place results also the
    name of the source whose storage they updated ("fc1.weight").

    A plan (PLAN.json path or dict, "format": "memfit.plan") runs its steps
    in order (memfit.plan.execute: compute, recompute, swap_out, swap_in,
    free); arena=True places its storages at their offsets in one byte
    buffer. phases, keep_all and grad_phases do not apply to plans.
    """
    if is_plan(graph):
        if phases is not None or keep_all:
            raise Error("phases= and keep_all= do not apply to a plan; its steps say what runs and what is freed")
        return execute(graph, inputs, seed=seed, dtype=dtype, device=device, arena=arena, generate=generate,
                       check=check, track_memory=False).outputs
    if arena:
        raise Error("arena=True needs a plan with buffers (memfit plan G.json -o PLAN.json)")
    g = load(graph)
    ops = OpRunner(g, dtype=dtype, device=device, check=check)
    dev = device or "cpu"
    env = take_inputs(g, inputs, dtype, keep_grad=True)

    selected = [op for op in g.ops if phases is None or op.phase in phases]
    keep = set(g.outputs)
    last_use: Dict[int, int] = {}
    for step, op in enumerate(selected):
        for tid in op.inputs:
            last_use[tid] = step

    if seed is not None:
        torch.manual_seed(seed)
    any_grad = any(v.requires_grad for v in env.values())

    def fetch(op: Op, tid: int) -> torch.Tensor:
        if tid not in env:
            t = g.tensors[tid]
            if t.producer is not None and (phases is None or g.ops[t.producer].phase in phases):
                raise Error(f"op '{op.name}' ({op.qualified_type}): input '{t.name}' was freed or not computed")
            if t.producer is not None:
                raise Error(f"op '{op.name}' ({op.qualified_type}): input '{t.name}' is produced by op "
                            f"'{g.ops[t.producer].name}' in phase '{g.ops[t.producer].phase}', which is not run; "
                            f"pass it in inputs")
            if t.alias_of is not None:
                raise Error(f"op '{op.name}': source '{t.name}' aliases another tensor; pass it in inputs")
            if not generate:
                raise Error(f"missing input '{t.name}' ({t.role} {t.dtype}{list(t.shape)}) for op '{op.name}'")
            env[tid] = make_source(g, tid, seed or 0, dtype, dev, ops.ctx)
        return env[tid]

    for step, op in enumerate(selected):
        if op.outputs and all(o in env for o in op.outputs):
            continue  # results given by the caller
        results = ops.call(op, lambda tid: fetch(op, tid), grad=any_grad and op.phase in grad_phases)
        for tid, value in zip(op.outputs, results):
            env[tid] = value
        if not keep_all:
            for tid in set(op.inputs):
                if last_use.get(tid) == step and tid not in keep:
                    env.pop(tid, None)
            for tid in op.outputs:
                if tid not in last_use and tid not in keep:
                    env.pop(tid, None)

    out: Dict[str, torch.Tensor] = {}
    if keep_all:
        for tid, value in env.items():
            out[g.tensors[tid].name] = value
    out.update(outputs_by_name(g, env, "was not computed", skip_missing=phases is not None))
    return out
