"""A live DTR runtime: runs a memfit graph with real torch tensors under a byte budget.

    import memfit
    r = memfit.dtr_run("bert.json", budget_ratio=0.5, heuristic="dtr")
    r.outputs["loss"], r.evictions, r.recomputations, r.overhead

    python3 -m memfit.dtr GRAPH.json (--budget-ratio R | --budget BYTES) [--heuristic H] [--verify] [--json]

Dynamic Tensor Rematerialization (Kirisame et al., ICLR 2021) executes a
program op by op and, whenever an op's outputs do not fit in the budget,
evicts resident tensors chosen by a heuristic; an evicted tensor needed
again is recomputed by rerunning its producer, recursively. This module does
that for real, on the ops of a memfit graph (as memfit.run executes them), and
mirrors the trace simulator of src/dtr (docs/dtr.md):

  - Memory is counted per storage (a view shares its base's storage), from
    the graph's declared shapes and dtypes; every resident storage counts,
    sources (parameters, buffers, inputs, optimizer states) included.
  - Running an op: touch its inputs (last access = now), lock the resident
    ones, make the evicted ones resident (recursively) and lock them, evict
    unlocked evictable storages lowest score first until the op's new
    storages fit, run the op, unlock. Nothing evictable: memfit.Error "out of
    memory". Ties go to the storage that became evictable last; a score of
    exactly 0 is taken at once.
  - Eager eviction: a storage is freed right after its last use in program
    order, but stays in the graph, so a later recomputation may rebuild it.
  - A view is redefined by rerunning its view op on its (rematerialized) base;
    evicting a storage undefines all its views.
  - Sources and storages holding graph outputs are pinned (never evicted).

Correctness rules (so that the outputs equal eager memfit.run bit for bit):

  - An op that writes in place (a schema argument marked ``(a!)``: optimizer
    updates, ``add_``, ``copy_``) is never recomputed, and a storage it writes
    is never evicted (only freed after its last use).
  - BatchNorm in training mode writes its running statistics, which its
    outputs do not read: it may be recomputed, and those writes are undone
    (the statistics are saved before and restored after the recomputation, as
    memfit.plan does), so they are updated once.
  - A storage is evictable (recomputable) only while rerunning its producer
    reads the values the first run read. One pass in program order gives each
    storage a deadline: the last op before which no input storage of its
    producer (following views to their base) has been written since the
    producer ran, and every input storage is pinned, itself recomputable
    (its deadline applies), or still resident (not past its last use). A
    storage is evictable when its last use is within its deadline; storages
    computed from it then have earlier deadlines, so it is never needed for a
    recomputation past its own. (On training graphs this keeps the weight
    gradients resident: the optimizer reads them after its first update.)
  - Random ops (dropout) save torch's RNG state at their first run and replay
    it on recomputation (restoring the state after), so torch's RNG stream in
    program order is the eager one and recomputed masks are bit-identical.

Heuristics (lower score is evicted first; c(s) = cost of the ops that
produced s's tensors, |s| its bytes, staleness = clock - last access; the
clock advances by each op's cost, recomputations included):

  dtr        (c(s) + c(evicted neighbourhood of s)) / (|s| x staleness); the
             neighbourhood is the evicted storages reachable from s through
             evicted storages towards its parents and towards its children
             (computed exactly; simrd caches an approximation of it)
  dtr-eq     like dtr, the neighbourhood approximated by union-find classes of
             evicted storages (a class's cost is decremented on recomputation)
  dtr-local  c(s) / (|s| x staleness)
  msps       (c(s) + c(evicted ancestors of s)) / |s|
  lru        last access
  largest    1 / |s|
  random     uniform, from `seed`

Costs: by default a deterministic estimate from the graph (bytes read and
written plus 2 x multiply-adds of matmuls and convolutions), so runs are
reproducible; costs="measured" times each op's first execution (as the DTR
prototype does); a dict op name -> seconds, or a memfit cost table
(python -m memfit.profile) are also accepted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, Union

import torch

from .executor import (FLOATING, _Context, _results, call_overload, check_results, make_source,
                       make_sources, op_kwargs, tensor_nbytes)
from .executor import run as eager_run
from .graph import Error, Graph, Op, load
from .plan import RANDOM_OPS, _storage_key, is_plan

HEURISTICS = ("dtr", "dtr-eq", "dtr-local", "msps", "lru", "largest", "random")

# memfit/__init__.py imports this module, so `python3 -m memfit.dtr` finds it already imported and
# runpy warns before running it as __main__; harmless here (the module keeps no shared state).
warnings.filterwarnings("ignore", message="'memfit.dtr' found in sys.modules", category=RuntimeWarning)

# Ops whose writes to these arguments (in training mode) are side effects that
# their outputs do not read (torch 1.13's schemas do not mark them): they may
# be recomputed with the writes undone.
_SIDE_EFFECT_WRITES = {
    "aten.native_batch_norm": ("running_mean", "running_var"),
    "aten.batch_norm": ("running_mean", "running_var"),
    "aten._batch_norm_impl_index": ("running_mean", "running_var"),
    "aten.cudnn_batch_norm": ("running_mean", "running_var"),
    "aten.miopen_batch_norm": ("running_mean", "running_var"),
}

# Ops costed as 2 x multiply-adds on top of their bytes by the estimate.
_MATMULS = ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm")
_CONVOLUTIONS = ("aten.convolution", "aten._convolution", "aten.convolution_backward")


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


# ---- static analysis -----------------------------------------------------------


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


def _written_inputs(ctx: _Context, op: Op) -> Tuple[List[int], List[int]]:
    """Input positions `op` writes in place: (marked (a!) in the schema, side effects of _SIDE_EFFECT_WRITES)."""
    b = ctx.binding(op)
    args = {a.name: a for a in b.overload._schema.arguments}
    hard: List[int] = []
    side: List[int] = []
    side_names = _SIDE_EFFECT_WRITES.get(op.type, ()) if op.attrs.get("training") else ()
    for name, positions in b.tensor_args:
        info = args[name].alias_info
        if info is not None and info.is_write:
            hard.extend(positions)
        elif name in side_names:
            side.extend(positions)
    return hard, side


def analyze(graph, dtype: Optional[torch.dtype] = None, ctx: Optional[_Context] = None) -> _Analysis:
    """Storages, sizes, last uses, in-place writes and the recomputable storages of `graph`."""
    g = load(graph)
    ctx = ctx or _Context(g)
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


# ---- costs ----------------------------------------------------------------------


def _is_view_op(g: Graph, a: _Analysis, op: Op) -> bool:
    return bool(op.outputs) and not a.writes[op.id] and all(g.tensors[t].alias_of is not None for t in op.outputs)


def estimate_cost(g: Graph, a: _Analysis, op: Op) -> float:
    """Bytes of the op's inputs and new outputs, plus 2 x multiply-adds of matmuls and convolutions;
    0 for a view op."""
    if _is_view_op(g, a, op):
        return 0.0
    cost = sum(tensor_nbytes(g, t) for t in dict.fromkeys(op.inputs))
    cost += sum(a.size_bytes[t] for t in dict.fromkeys(op.outputs) if a.root[t] == t)
    shapes = [g.tensors[t].shape for t in op.inputs]
    if op.type in _MATMULS and op.outputs:
        a_shape = shapes[-2]
        cost += 2 * math.prod(g.tensors[op.outputs[0]].shape) * (a_shape[-1] if a_shape else 1)
    elif op.type in _CONVOLUTIONS and len(shapes) >= 2:
        if op.type == "aten.convolution_backward":
            # grad_output, input, weight: each of grad_input and grad_weight costs about a convolution.
            grad_out, weight = shapes[0], shapes[2]
            mask = op.attrs.get("output_mask", [1, 1, 0])
            cost += 2 * math.prod(grad_out) * math.prod(weight[1:]) * sum(1 for m in mask[:2] if m)
        elif op.outputs:
            cost += 2 * math.prod(g.tensors[op.outputs[0]].shape) * math.prod(shapes[1][1:])
    return float(cost)


def _table_costs(g: Graph, a: _Analysis, table: Dict[str, Any], source: str) -> Dict[int, float]:
    from .profile import cost_key
    if table.get("format") != "memfit.costs":
        raise Error(f"{source}: not a memfit cost table (field 'format' must be \"memfit.costs\")")
    by_key = {}
    for i, e in enumerate(table.get("entries", [])):
        try:
            key = (e["op"], e.get("overload", "default"), tuple(tuple(s) for s in e["input_shapes"]), e["dtype"])
            by_key[key] = float(e["latency_us"]) * 1e-6
        except (KeyError, TypeError, ValueError):
            raise Error(f"{source}: entries[{i}]: needs op, input_shapes, dtype and latency_us") from None
    costs = {}
    for op in g.ops:
        key = cost_key(g, op)
        if key in by_key:
            costs[op.id] = by_key[key]
        elif _is_view_op(g, a, op):
            costs[op.id] = 0.0
        else:
            raise Error(f"{source}: no entry for op '{op.name}' ({op.qualified_type}, input shapes "
                        f"{[list(s) for s in key[2]]}, {key[3]})")
    return costs


def _resolve_costs(g: Graph, a: _Analysis, costs) -> Tuple[Optional[Dict[int, float]], str]:
    """Per-op costs and their unit; None for "measured" (filled in at each op's first run)."""
    if costs is None:
        return {op.id: estimate_cost(g, a, op) for op in g.ops}, "estimate"
    if isinstance(costs, str) and costs == "measured":
        return None, "s"
    if isinstance(costs, Mapping):
        if costs.get("format") == "memfit.costs":
            return _table_costs(g, a, dict(costs), "<costs>"), "s"
        known = {op.name for op in g.ops}
        unknown = sorted(k for k in costs if k not in known)
        if unknown:
            raise Error(f"costs: graph '{g.name}' has no op named {', '.join(repr(k) for k in unknown[:5])}")
        out = {}
        for op in g.ops:
            if op.name in costs:
                value = costs[op.name]
                if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                    raise Error(f"costs['{op.name}']: must be a non-negative number of seconds, got {value!r}")
                out[op.id] = float(value)
            elif _is_view_op(g, a, op):
                out[op.id] = 0.0
            else:
                raise Error(f"costs: no cost for op '{op.name}' ({op.qualified_type})")
        return out, "s"
    if isinstance(costs, (str, os.PathLike)):
        try:
            with open(costs) as f:
                table = json.load(f)
        except (OSError, ValueError) as e:
            raise Error(f"{costs}: cannot read cost table: {e}") from None
        return _table_costs(g, a, table, str(costs)), "s"
    raise Error(f"costs: expected None, \"measured\", a dict op name -> seconds or a cost table path, "
                f"got {type(costs).__name__}")


# ---- the runtime ------------------------------------------------------------------


class _Runtime:
    """DTR state over one graph; _materialize / _compute / _free / _evict mirror src/dtr/simulator.cc."""

    def __init__(self, g: Graph, a: _Analysis, ctx: _Context, env: Dict[int, torch.Tensor], budget: int,
                 heuristic: str, seed: int, costs: Optional[Dict[int, float]], dtype, device, result: DtrRun,
                 record_events: bool):
        self.g, self.a, self.ctx, self.env = g, a, ctx, env
        self.budget = budget
        self.heuristic = heuristic
        self.costs = costs if costs is not None else {}
        self.measure = costs is None
        self.dtype, self.device = dtype, device
        self.cuda = bool(device) and torch.device(device).type == "cuda"
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        self.r = result
        self.record = record_events
        self.rng = random.Random(seed)
        self.step = -1
        self.clock = 1.0  # simrd's clock starts at 1
        self.memory = sum(a.size_bytes[r] for r in a.tensors_of if g.tensors[r].producer is None)
        self.material: Set[int] = {r for r in a.tensors_of if g.tensors[r].producer is None}
        self.computed: Set[int] = set(self.material)  # storages computed at least once
        self.locks: Dict[int, int] = {}
        self.last_access: Dict[int, float] = {}
        self.cost: Dict[int, float] = {}  # c(s): the ops that produced s's tensors, each once
        self.cost_ops: Dict[int, Set[int]] = {}
        self.parents: Dict[int, Set[int]] = {}  # storage adjacency, as ops have run
        self.children: Dict[int, Set[int]] = {}
        self.pool: List[Optional[int]] = []  # evictable storages in the order they became evictable
        self.pool_index: Dict[int, int] = {}
        self.eq_parent: List[int] = []  # dtr-eq union-find
        self.eq_cost: List[float] = []
        self.eq_of: Dict[int, int] = {}
        self.rng_states: Dict[int, Tuple[torch.Tensor, Optional[torch.Tensor]]] = {}  # random ops' first runs
        # Torch storages referenced by env, by data pointer: [tensors referencing it, bytes].
        self.torch_storages: Dict[int, List[int]] = {}
        self.torch_bytes = 0
        for tid, value in env.items():
            self.track(value, +1)
        self.account()

    # ---- the evictable pool ----
    def eligible(self, s: int) -> bool:
        a = self.a
        return (s in self.material and not self.locks.get(s) and s not in a.pinned
                and (s in a.recomputable or self.step > a.last_use[s]))

    def pool_add(self, s: int) -> None:
        if s in self.pool_index or not self.eligible(s):
            return
        self.pool_index[s] = len(self.pool)
        self.pool.append(s)

    def pool_remove(self, s: int) -> None:
        i = self.pool_index.pop(s, None)
        if i is None:
            return
        self.pool[i] = None
        if len(self.pool) > 64 and len(self.pool) > 2 * len(self.pool_index):
            self.pool = [x for x in self.pool if x is not None]
            self.pool_index = {x: i for i, x in enumerate(self.pool)}

    def lock(self, s: int) -> None:
        self.locks[s] = self.locks.get(s, 0) + 1
        self.pool_remove(s)

    def unlock(self, s: int) -> None:
        self.locks[s] -= 1
        if self.locks[s] == 0:
            self.pool_add(s)

    def event(self, what: str, tid: int) -> None:
        if self.record:
            self.r.events.append(f"{what} {self.g.tensors[tid].name}")

    def track(self, value: torch.Tensor, delta: int) -> None:
        ptr, nbytes = _storage_key(value)
        entry = self.torch_storages.setdefault(ptr, [0, 0])
        if entry[0] == 0:
            entry[1] = nbytes
            self.torch_bytes += nbytes
        entry[0] += delta
        if entry[0] == 0:
            self.torch_bytes -= entry[1]
            del self.torch_storages[ptr]

    def put(self, tid: int, value: torch.Tensor) -> None:
        self.env[tid] = value
        self.track(value, +1)

    def drop(self, tid: int) -> None:
        value = self.env.pop(tid, None)
        if value is not None:
            self.track(value, -1)

    def account(self) -> None:
        self.r.peak_bytes = max(self.r.peak_bytes, self.memory)
        self.r.tracked_peak_bytes = max(self.r.tracked_peak_bytes, self.torch_bytes)

    # ---- running ops ----
    def run_program_op(self, op: Op) -> None:
        a = self.a
        self.step = op.id
        self.materialize(op, remat=False)
        for t in op.outputs:
            self.last_access[a.root[t]] = self.clock
        for r in sorted({a.root[t] for t in list(op.inputs) + list(op.outputs)}):
            if a.last_use[r] == op.id and r not in a.pinned and r in self.material:
                self.evict(r)
                self.r.eager_evictions += 1
                self.event("release", r)

    def materialize(self, op: Op, remat: bool, target: Optional[int] = None) -> None:
        a, env = self.a, self.env
        parents = list(dict.fromkeys(op.inputs))
        for p in parents:
            self.last_access[a.root[p]] = self.clock
        undefined = []
        for p in parents:
            if p in env:
                self.lock(a.root[p])
            else:
                undefined.append(p)
        for p in undefined:
            if p not in env:
                producer = self.g.tensors[p].producer
                s = a.root[p]
                if producer is None or (s not in self.material and not self.step <= a.deadline.get(s, -1)):
                    raise Error(f"internal error: op '{self.g.ops[self.step].name}' needs "
                                f"'{self.g.tensors[p].name}', which is freed and may not be recomputed now")
                self.materialize(self.g.ops[producer], remat=True, target=p)
            self.lock(a.root[p])
        new = [a.root[t] for t in dict.fromkeys(op.outputs) if a.root[t] == t and t not in self.material]
        need = sum(a.size_bytes[s] for s in new)
        if self.memory + need > self.budget:
            self.free(need, op, remat)
        self.compute(op, remat, target, new)
        for p in parents:
            self.unlock(a.root[p])

    def rng_state(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda else None

    def set_rng_state(self, state: Tuple[torch.Tensor, Optional[torch.Tensor]]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1])

    def compute(self, op: Op, remat: bool, target: Optional[int], new: List[int]) -> None:
        g, a, env = self.g, self.a, self.env
        b, kwargs = op_kwargs(self.ctx, op, lambda tid: env[tid], self.dtype, self.device)
        undo = []
        if remat:
            for k in a.side_effects[op.id]:
                value = env[op.inputs[k]]
                undo.append((value, value.clone()))
        saved_rng = None
        if op.type in RANDOM_OPS:
            if remat:
                saved_rng = self.rng_state()
                self.set_rng_state(self.rng_states[op.id])
            else:
                self.rng_states[op.id] = self.rng_state()
        first = not remat and op.id not in self.costs
        if first:
            self.sync()
            start = time.perf_counter()
        results = _results(op, call_overload(op, b.overload, kwargs))
        if first:
            self.sync()
            self.costs[op.id] = time.perf_counter() - start
        if saved_rng is not None:
            self.set_rng_state(saved_rng)
        for value, before in undo:
            value.copy_(before)
        check_results(g, op, results, self.dtype)
        del kwargs

        cost = self.costs[op.id]
        self.clock += cost
        self.memory += sum(a.size_bytes[s] for s in new)
        if remat:
            self.r.recompute_cost += cost
            self.r.recomputations += 1
            self.event("recompute", target if target is not None else op.outputs[0])
        else:
            self.r.compute_cost += cost
        for tid, value in zip(op.outputs, results):
            if tid not in env:
                self.put(tid, value)
        del results
        for s in new:
            self.material.add(s)
        if not remat:
            ins = {a.root[t] for t in op.inputs}
            for s in dict.fromkeys(a.root[t] for t in op.outputs):
                if op.id not in self.cost_ops.setdefault(s, set()):
                    self.cost_ops[s].add(op.id)
                    self.cost[s] = self.cost.get(s, 0.0) + cost
                for p in ins - {s}:
                    self.parents.setdefault(s, set()).add(p)
                    self.children.setdefault(p, set()).add(s)
                self.computed.add(s)
        for s in new:
            if s in self.eq_of:
                root = self.eq_find(self.eq_of.pop(s))
                self.eq_cost[root] -= self.cost[s]
            self.pool_add(s)
        self.account()

    def free(self, need: int, op: Op, remat: bool) -> None:
        while self.memory + need > self.budget:
            if not self.pool_index:
                where = f"op '{op.name}'"
                if remat:
                    where = f"op '{self.g.ops[self.step].name}' (recomputing '{op.name}')"
                raise Error(f"out of memory at {where}: need {need} bytes, budget {self.budget}, "
                            f"{self.memory} resident bytes all pinned/locked")
            s = self.choose()
            self.evict(s)
            self.r.evictions += 1
            self.event("evict", s)

    def evict(self, s: int) -> None:
        self.material.discard(s)
        self.memory -= self.a.size_bytes[s]
        self.pool_remove(s)
        for t in self.a.tensors_of[s]:
            self.drop(t)
        if self.heuristic == "dtr-eq":
            node = len(self.eq_parent)
            self.eq_parent.append(node)
            self.eq_cost.append(self.cost.get(s, 0.0))
            self.eq_of[s] = node
            for n in sorted(self.evicted_neighbours(s)):
                left, right = self.eq_find(self.eq_of[n]), self.eq_find(node)
                if left != right:
                    self.eq_parent[left] = right
                    self.eq_cost[right] += self.eq_cost[left]

    # ---- heuristics ----
    def evicted_neighbours(self, s: int) -> Set[int]:
        near = self.parents.get(s, set()) | self.children.get(s, set())
        return {n for n in near if n in self.computed and n not in self.material}

    def eq_find(self, node: int) -> int:
        root = node
        while self.eq_parent[root] != root:
            root = self.eq_parent[root]
        while self.eq_parent[node] != root:
            self.eq_parent[node], node = root, self.eq_parent[node]
        return root

    def evicted_closure_cost(self, s: int, edges: Dict[int, Set[int]]) -> float:
        """Sum of c over evicted storages reachable from s through evicted storages along `edges`."""
        seen: Set[int] = set()
        stack = [s]
        total = 0.0
        while stack:
            u = stack.pop()
            for v in edges.get(u, ()):
                if v in seen or v in self.material or v not in self.computed:
                    continue
                seen.add(v)
                total += self.cost.get(v, 0.0)
                stack.append(v)
        return total

    def staleness_score(self, s: int, cost: float) -> float:
        denominator = self.a.size_bytes[s] * (self.clock - self.last_access.get(s, self.clock))
        return cost / denominator if denominator > 0 else math.inf

    def score(self, s: int) -> float:
        h = self.heuristic
        c = self.cost.get(s, 0.0)
        if h == "dtr":
            return self.staleness_score(s, c + self.evicted_closure_cost(s, self.parents)
                                        + self.evicted_closure_cost(s, self.children))
        if h == "dtr-eq":
            roots = {self.eq_find(self.eq_of[n]) for n in self.evicted_neighbours(s)}
            return self.staleness_score(s, c + sum(self.eq_cost[r] for r in roots))
        if h == "dtr-local":
            return self.staleness_score(s, c)
        if h == "msps":
            size = self.a.size_bytes[s]
            return (c + self.evicted_closure_cost(s, self.parents)) / size if size > 0 else math.inf
        if h == "lru":
            return self.last_access.get(s, 0.0)
        if h == "largest":
            size = self.a.size_bytes[s]
            return 1.0 / size if size > 0 else math.inf
        raise AssertionError(h)

    def choose(self) -> int:
        live = [s for s in self.pool if s is not None]
        if self.heuristic == "random":
            return live[self.rng.randrange(len(live))]
        best, chosen = math.inf, live[-1]
        for s in live:
            score = self.score(s)
            if score <= best:
                best, chosen = score, s
            if score == 0:
                break
        return chosen


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
    evicting and recomputing real tensors with `heuristic` (see the module docstring).

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
    ctx = _Context(g)
    a = analyze(g, dtype, ctx)
    unconstrained = unconstrained_peak_bytes(g, dtype, a)
    budget = budget_bytes if budget_bytes is not None else int(math.floor(budget_ratio * unconstrained))
    op_costs, unit = _resolve_costs(g, a, costs)
    result = DtrRun({}, heuristic=heuristic, budget_bytes=budget, unconstrained_peak_bytes=unconstrained,
                    cost_unit=unit, ops=len(g.ops), evictable_storages=len(a.recomputable))

    dev = device or "cpu"
    by_name = {t.name: t for t in g.tensors}
    env: Dict[int, torch.Tensor] = {}
    for name, value in (inputs or {}).items():
        t = by_name.get(name)
        if t is None:
            raise Error(f"graph '{g.name}' has no tensor named '{name}'")
        if t.producer is not None or t.alias_of is not None:
            raise Error(f"input '{name}' is not a source of graph '{g.name}': dtr_run takes only sources "
                        f"(parameters, buffers, inputs, optimizer states)")
        if not isinstance(value, torch.Tensor):
            raise Error(f"input '{name}' is a {type(value).__name__}, not a torch.Tensor")
        if list(value.shape) != list(t.shape):
            raise Error(f"input '{name}' has shape {list(value.shape)}, the graph declares {list(t.shape)}")
        if dtype is not None and t.dtype in FLOATING and value.dtype != dtype:
            value = value.detach().to(dtype)
        env[t.id] = value
    for r in a.tensors_of:
        t = g.tensors[r]
        if t.producer is None and r not in env:
            env[r] = make_source(g, r, seed or 0, dtype, dev, ctx)

    if seed is not None:
        torch.manual_seed(seed)
    runtime = _Runtime(g, a, ctx, env, budget, heuristic, seed, op_costs, dtype, device, result, record_events)
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

    out: Dict[str, torch.Tensor] = {}
    for tid in g.outputs:
        if tid not in env:
            raise Error(f"internal error: graph output '{g.tensors[tid].name}' is not resident at the end")
        out[g.tensors[tid].name] = env[tid]
        r = a.root[tid]
        if r != tid and g.tensors[r].producer is None:
            out[g.tensors[r].name] = env[tid]
    result.outputs = out
    result.overhead = ((result.compute_cost + result.recompute_cost) / result.compute_cost
                       if result.compute_cost > 0 else 1.0)
    return result


# ---- CLI -------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"error: {message}\n")


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def main(argv: Optional[List[str]] = None) -> int:
    parser = _Parser(prog="python3 -m memfit.dtr", description=__doc__.split("\n\n")[0])
    parser.add_argument("graph", help="graph JSON")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-ratio", type=float, help="budget as a fraction of the unconstrained peak")
    budget.add_argument("--budget", type=int, help="budget in bytes")
    parser.add_argument("--heuristic", default="dtr", help=f"one of {', '.join(HEURISTICS)} (default dtr)")
    parser.add_argument("--seed", type=int, default=0, help="sources, dropout and the random heuristic (default 0)")
    parser.add_argument("--costs", help="'measured' (time each op's first run) or a cost table JSON "
                                        "(default: an estimate from the graph)")
    parser.add_argument("--verify", action="store_true",
                        help="also run eager memfit.run and check every output and updated state is bit-identical")
    parser.add_argument("--events", action="store_true", help="print every eviction, release and recomputation")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.heuristic not in HEURISTICS:
        parser.error(f"--heuristic: unknown heuristic '{args.heuristic}' (one of {', '.join(HEURISTICS)})")
    if args.budget_ratio is not None and not (args.budget_ratio > 0 and math.isfinite(args.budget_ratio)):
        parser.error(f"--budget-ratio: must be positive, got {args.budget_ratio}")
    if args.budget is not None and args.budget < 0:
        parser.error(f"--budget: must be non-negative, got {args.budget}")
    try:
        g = load(args.graph)
        sources = make_sources(g, seed=args.seed) if args.verify else {}
        dtr_sources = {k: v.clone() for k, v in sources.items()}
        run = dtr_run(g, dtr_sources or None, budget_bytes=args.budget, budget_ratio=args.budget_ratio,
                      heuristic=args.heuristic, seed=args.seed, costs=args.costs, record_events=args.events)
        mismatches: List[str] = []
        if args.verify:
            eager_sources = {k: v.clone() for k, v in sources.items()}
            eager_start = time.perf_counter()
            ref = eager_run(g, eager_sources, seed=args.seed)
            eager_s = time.perf_counter() - eager_start
            for name, value in sorted(ref.items()):
                got = run.outputs.get(name)
                if got is None or got.dtype != value.dtype or got.shape != value.shape or not torch.equal(got, value):
                    mismatches.append(name)
            for name in sorted(eager_sources):
                if not torch.equal(eager_sources[name], dtr_sources[name]):
                    mismatches.append(name)
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stats = run.stats()
    if args.verify:
        stats["verified"] = not mismatches
        stats["mismatches"] = mismatches
        stats["eager_wall_s"] = eager_s
    if args.json:
        print(json.dumps({"graph": g.name, **stats}, indent=1))
    else:
        ratio = run.budget_bytes / run.unconstrained_peak_bytes if run.unconstrained_peak_bytes else 0.0
        print(f"{g.name}: heuristic {run.heuristic}, budget {_mib(run.budget_bytes)} ({ratio:.3f} x unconstrained "
              f"peak {_mib(run.unconstrained_peak_bytes)}), {run.evictable_storages} evictable storages")
        print(f"status {run.status}: peak {_mib(run.peak_bytes)} (torch storages {_mib(run.tracked_peak_bytes)}), "
              f"{run.evictions} evictions, {run.eager_evictions} released, {run.recomputations} recomputations")
        print(f"overhead {run.overhead:.4f} (compute {run.compute_cost:.6g}, recompute {run.recompute_cost:.6g} "
              f"{run.cost_unit}), wall {run.wall_s:.3f} s")
        for e in run.events:
            print(f"  {e}")
        if args.verify:
            if mismatches:
                print(f"verify: {len(mismatches)} differ from eager memfit.run: {', '.join(mismatches[:10])}")
            else:
                print(f"verify: {len(ref)} outputs and {len(eager_sources)} sources bit-identical to eager "
                      f"memfit.run (eager wall {eager_s:.3f} s)")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
