"""memfit.dtr_run: a graph run for real under a byte budget by the live DTR runtime."""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from ..graph import Error, load
from ..plan_file import is_plan
from ..runner import OpRunner, outputs_by_name, take_inputs
from ..sources import make_source
from .analysis import analyze, unconstrained_peak_bytes
from .costs import _resolve_costs
from .runtime import HEURISTICS, _Runtime


@dataclass
class DtrRun:
    """What dtr_run returns: the outputs (as memfit.run returns them) and the run's figures."""

    outputs: Dict[str, torch.Tensor]
    status: str = "ok"  # "ok": every op ran within the budget (running out of memory raises)
    heuristic: str = "dtr"
    budget_bytes: int = 0
    unconstrained_peak_bytes: int = 0  # program order, sources resident, others freed after their last use
    peak_bytes: int = 0  # most accounted resident bytes (graph sizes, each storage once)
    tracked_peak_bytes: int = 0  # most bytes of distinct torch storages referenced by live tensors
    evictions: int = 0  # storages evicted by the heuristic
    eager_evictions: int = 0  # storages freed after their last use
    recomputations: int = 0  # ops rerun (a view's op rerun on a rematerialized base counts)
    compute_cost: float = 0.0  # every op of the graph once
    recompute_cost: float = 0.0  # recomputations
    overhead: float = 1.0  # (compute_cost + recompute_cost) / compute_cost
    cost_unit: str = "estimate"  # "estimate" (bytes + FLOPs) or "s"
    wall_s: float = 0.0  # wall time of the run
    ops: int = 0  # ops of the graph
    evictable_storages: int = 0  # storages the correctness rules let the runtime evict
    events: List[str] = field(default_factory=list)  # "evict x", "release x", "recompute x"

    def stats(self) -> Dict[str, Any]:
        """The figures without the outputs (JSON-ready)."""
        return {k: v for k, v in self.__dict__.items() if k != "outputs" and (k != "events" or v)}



def dtr_run(
    graph_or_path,
    inputs: Optional[Mapping[str, torch.Tensor]] = None,
    *,
    budget_bytes: Optional[int] = None,
    budget_ratio: Optional[float] = None,
    heuristic: str = "dtr",
    seed: int = 0,
    costs: Union[None, str, os.PathLike, Mapping[str, Any]] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[str] = None,
    record_events: bool = False,
) -> DtrRun:
    """Executes `graph_or_path` (path, JSON dict or Graph) in program order under a byte budget,
    evicting and recomputing real tensors with `heuristic` (see memfit.dtr's docstring).

    inputs: source tensors by name (parameters, buffers, inputs, optimizer
        states); missing ones are generated from `seed` as memfit.run does.
        In-place ops mutate them (the optimizer update, running statistics).
    budget_bytes / budget_ratio: exactly one; a ratio is relative to the
        unconstrained program-order peak (unconstrained_peak_bytes).
    heuristic: one of HEURISTICS.
    seed: sources, torch's RNG (dropout) and the random heuristic.
    costs: None (estimate from the graph), "measured" (each op's first run),
        a dict op name -> seconds, a memfit cost table dict or path.
    dtype, device: as for memfit.run (sizes follow dtype).
    record_events: fill DtrRun.events.

    Returns a DtrRun whose outputs equal memfit.run's; memfit.Error when the
    budget cannot hold an op ("out of memory at op ...").
    """
    if is_plan(graph_or_path):
        raise Error("dtr_run takes a graph, not a plan: DTR decides evictions and recomputations itself")
    if heuristic not in HEURISTICS:
        raise Error(f"unknown heuristic '{heuristic}' (one of {', '.join(HEURISTICS)})")
    if (budget_bytes is None) == (budget_ratio is None):
        raise Error("give exactly one of budget_bytes and budget_ratio")
    if budget_bytes is not None and (not isinstance(budget_bytes, int) or budget_bytes < 0):
        raise Error(f"budget_bytes must be a non-negative integer, got {budget_bytes!r}")
    if budget_ratio is not None and (not isinstance(budget_ratio, (int, float)) or not budget_ratio > 0
                                     or not math.isfinite(budget_ratio)):
        raise Error(f"budget_ratio must be a positive number, got {budget_ratio!r}")
    g = load(graph_or_path)
    ops = OpRunner(g, dtype=dtype, device=device)
    a = analyze(g, dtype, ops.ctx)
    unconstrained = unconstrained_peak_bytes(g, dtype, a)
    budget = budget_bytes if budget_bytes is not None else int(math.floor(budget_ratio * unconstrained))
    op_costs, unit = _resolve_costs(g, a, costs)
    result = DtrRun({}, heuristic=heuristic, budget_bytes=budget, unconstrained_peak_bytes=unconstrained,
                    cost_unit=unit, ops=len(g.ops), evictable_storages=len(a.recomputable))

    dev = device or "cpu"
    env = take_inputs(g, inputs, dtype, sources_only="dtr_run takes only sources (parameters, buffers, inputs, "
                                                    "optimizer states)")
    for r in a.tensors_of:
        t = g.tensors[r]
        if t.producer is None and r not in env:
            env[r] = make_source(g, r, seed or 0, dtype, dev, ops.ctx)

    if seed is not None:
        torch.manual_seed(seed)
    runtime = _Runtime(g, a, ops, env, budget, heuristic, seed, op_costs, result, record_events)
    if runtime.memory > budget:
        raise Error(f"out of memory before the first op: the sources of graph '{g.name}' need "
                    f"{runtime.memory} bytes, budget {budget}")
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 4 * len(g.ops) + 1000))
    start = time.perf_counter()
    try:
        for op in g.ops:
            runtime.run_program_op(op)
    finally:
        sys.setrecursionlimit(old_limit)
    result.wall_s = time.perf_counter() - start

    result.outputs = outputs_by_name(g, env, "is not resident at the end (internal error)")
    result.overhead = ((result.compute_cost + result.recompute_cost) / result.compute_cost
                       if result.compute_cost > 0 else 1.0)
    return result
