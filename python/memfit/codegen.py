"""Compiles a memfit plan into Python source: one function per plan, run at eager speed.

memfit.plan.execute interprets a plan step by step (bindings looked up, results
checked, memory measured after every step); this module translates the same
steps once into straight-line Python and compiles it:

  - ``compute`` / ``recompute``: a direct call of the ATen overload's C++
    function (``torch.ops.aten.addmm.default._op``) on local variables, one
    variable per tensor (``v12``); constants that are not Python literals
    (dtypes, memory formats, devices) are globals of the generated module;
  - ``free``: ``del`` of every variable of the storage (and of its host copy);
  - ``swap_out`` / ``swap_in``: on CUDA, copies between the storage and a
    pinned host buffer (kept for the next step) on a side stream: the side
    stream waits for the main one before it copies, the device block is kept
    from the allocator until the copy is done (``record_stream``), and the main
    stream waits for a swap-in's event just before the first op that reads the
    storage, so the copy overlaps the ops in between; on the CPU, plain copies.
    The views of the storage that were live are re-created with their strides
    and offsets. Parameters, buffers and optimizer states are never copied: the
    caller holds them anyway, so a swap of one keeps the tensor;
  - random ops draw from torch's global generator in program order (eager's
    order), whatever order the plan runs them in: when the plan keeps their
    order, the generator state is saved only before the random ops it
    recomputes, and a recomputation replays it; when the plan reorders them,
    the function first draws each random op's numbers in program order on
    scratch tensors to record the generator state before each (the draws
    depend on sizes only, not on values), runs each op from its state, and
    leaves the generator where eager would;
  - a recomputed op that mutates an input (op flag ``mutates``: BatchNorm's
    running statistics) has the write undone, so the statistics are updated
    once;
  - numbers in op attributes equal to a key of ``scalars`` become ``P[k]``,
    read from the function's second argument each call (memfit.fit's learning
    rate and Adam bias corrections).

    compiled = compile_plan(plan)                     # a memfit.plan.Plan, dict or path
    outs = compiled(sources)                          # sources in compiled.sources order
    out = compiled.run({"fc1.weight": w, ...})        # by name, the rest generated

The generated source is ``compiled.source``; memfit.plan.execute remains the
reference it is checked against (python/tests/test_codegen.py). Pure Python:
needs torch, not the native module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import torch

from .fake_trace import METADATA_INPLACE
from .graph import Error, Graph, Op
from .plan_file import PERSISTENT_ROLES as _PERSISTENT_ROLES
from .plan_file import load_plan
from .runner import Context as _Context
from .runner import kernel, op_flags, op_kwargs
from .runner import positional_for as _positional_for
from .sources import make_source


class _Ref:
    """A tensor argument in op_kwargs' result: the variable of tensor `tid`."""

    __slots__ = ("tid",)

    def __init__(self, tid: int):
        self.tid = tid


def _whole_storage(t: torch.Tensor) -> torch.Tensor:
    """A flat uint8 tensor over all of t's storage (torch 1.13 and 2.x)."""
    if hasattr(t, "untyped_storage"):
        return torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())
    flat = torch.empty(0, dtype=t.dtype, device=t.device).set_(t.storage())
    return flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat


def _views_meta(*ts: torch.Tensor) -> List[Tuple[torch.dtype, Tuple[int, ...], Tuple[int, ...], int]]:
    return [(t.dtype, tuple(t.shape), t.stride(), t.storage_offset()) for t in ts]


def _views_of(base: torch.Tensor, meta) -> List[torch.Tensor]:
    out = []
    for dt, shape, stride, offset in meta:
        typed = base.view(dt) if dt != torch.uint8 else base
        out.append(typed.as_strided(shape, stride, offset))
    return out


class SwapRuntime:
    """Host copies of swapped storages; on CUDA a side stream, pinned buffers kept across calls, and events."""

    def __init__(self, device: torch.device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.host: Dict[Any, torch.Tensor] = {}
        self.events: Dict[Any, Any] = {}
        self._side = None

    @property
    def side(self):
        """The copy stream, made at the first swap (so a step compiles without CUDA)."""
        if self._side is None:
            self._side = torch.cuda.Stream(self.device)
        return self._side

    def _buffer(self, key, nbytes: int) -> torch.Tensor:
        h = self.host.get(key)
        if h is None or h.numel() != nbytes:
            h = torch.empty(nbytes, dtype=torch.uint8, pin_memory=self.cuda)
            self.host[key] = h
        return h

    def swap_out(self, key, t: torch.Tensor):
        """Copies t's storage to host; returns (host buffer, views meta is the caller's)."""
        base = _whole_storage(t)
        h = self._buffer(key, base.numel())
        if not self.cuda:
            h.copy_(base)
            return h
        main = torch.cuda.current_stream(self.device)
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            h.copy_(base, non_blocking=True)
        base.record_stream(self.side)  # the allocator keeps the block until the copy is done
        return h

    def swap_in(self, key, h: torch.Tensor, meta):
        d = torch.empty(h.numel(), dtype=torch.uint8, device=self.device)
        if not self.cuda:
            d.copy_(h)
            return _views_of(d, meta)
        main = torch.cuda.current_stream(self.device)
        # d's block may have been freed by tensors that ops queued on the main stream still read.
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            d.copy_(h, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.side)
        d.record_stream(self.side)
        self.events[key] = event
        return _views_of(d, meta)

    def wait(self, key) -> None:
        event = self.events.pop(key, None)
        if event is not None:
            torch.cuda.current_stream(self.device).wait_event(event)


@dataclass
class CompiledPlan:
    graph: Graph
    source: str  # the generated Python
    fn: Any  # fn(S, P) -> tuple of the graph outputs
    sources: List[int]  # tensor ids of the sources, in the order fn takes them
    outputs: List[int]  # tensor ids fn returns
    device: torch.device
    runtime: SwapRuntime
    reorders_random: bool = False  # random ops run out of program order (pre-drawn)
    slots: Dict[float, int] = field(default_factory=dict)  # scalar value -> index into P
    # compile_plan(timer=...): per plan step, the duration of each run of its code
    step_times: Optional[List[List[float]]] = None

    def __call__(self, sources: Sequence[torch.Tensor], scalars: Sequence[float] = ()) -> Tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return self.fn(sources, scalars)

    def run(self, inputs: Optional[Mapping[str, torch.Tensor]] = None, *, seed: int = 0, scalars: Sequence[float] = (),
            generate: bool = True) -> Dict[str, torch.Tensor]:
        """Like memfit.plan.execute(...).outputs: sources by name (the rest generated from
        `seed` when generate), torch's RNG seeded with `seed`; outputs by name."""
        g = self.graph
        by_name = {t.name: t for t in g.tensors}
        unknown = sorted(n for n in (inputs or {}) if n not in by_name)
        if unknown:
            raise Error(f"graph '{g.name}' has no tensor named {', '.join(repr(n) for n in unknown)}")
        ctx = _Context(g)
        values = []
        for tid in self.sources:
            t = g.tensors[tid]
            value = (inputs or {}).get(t.name)
            if value is None:
                if not generate:
                    raise Error(f"missing input '{t.name}' ({t.role} {t.dtype}{list(t.shape)})")
                value = make_source(g, tid, seed, None, self.device, ctx)
            elif list(value.shape) != list(t.shape):
                raise Error(f"input '{t.name}' has shape {list(value.shape)}, the graph declares {list(t.shape)}")
            values.append(value)
        torch.manual_seed(seed)
        results = self(values, scalars)
        out: Dict[str, torch.Tensor] = {}
        for tid, value in zip(self.outputs, results):
            out[g.tensors[tid].name] = value
            root = g.storage_root(tid)
            if root != tid and g.tensors[root].producer is None:
                out[g.tensors[root].name] = value
        return out


def _literal(value: Any) -> Optional[str]:
    """Python source for a plain value, or None when it needs a global."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        items = [_literal(v) for v in value]
        if any(i is None for i in items):
            return None
        body = ", ".join(items)
        return f"[{body}]" if isinstance(value, list) else f"({body}{',' if len(items) == 1 else ''})"
    return None


def _result_indices(op: Op, overload) -> Tuple[bool, List[int]]:
    """(single, indices): whether the overload returns one tensor, else the index into its
    result of each of op.outputs (masked-out results skipped, as the executor does)."""
    returns = overload._schema.returns
    if len(returns) == 1 and str(returns[0].type) == "Tensor":
        if len(op.outputs) != 1:
            raise Error(f"op '{op.name}' ({op.qualified_type}): returns one tensor, the graph declares "
                        f"{len(op.outputs)} outputs")
        return True, [0]
    n = len(returns) if len(returns) > 1 else None  # a single list return: any length
    mask = op.attrs.get("output_mask")
    positions = list(range(n if n is not None else len(op.outputs)))
    if mask is not None and n is not None:
        positions = [i for i in positions if i >= len(mask) or mask[i]]
    if len(positions) < len(op.outputs):
        raise Error(f"op '{op.name}' ({op.qualified_type}): returns {len(positions)} tensors, the graph declares "
                    f"{len(op.outputs)} outputs")
    return False, positions[: len(op.outputs)]


def compile_plan(plan, *, device: Any = "cpu", scalars: Optional[Mapping[float, int]] = None,
                 name: str = "memfit_step", timer: Optional[Callable[[], float]] = None) -> CompiledPlan:
    """Generates and compiles the Python function of `plan` (memfit.plan.Plan, dict or path).

    device: where the step runs (factory ops such as aten.arange get it).
    scalars: float attribute value -> index k; such values become P[k] (see the module docstring).
    timer: a clock (time.process_time, time.perf_counter): the code of each plan step
    is timed with it, every run appending its duration to compiled.step_times[i]
    (memfit.profile's costs measured inside the step; the reads of the clock add
    their own time, so time the step itself without a timer).
    """
    p = load_plan(plan)
    g = p.graph
    dev = torch.device(device)
    ctx = _Context(g)
    slots = dict(scalars or {})
    root = [g.storage_root(t.id) for t in g.tensors]
    consts: Dict[str, Any] = {}
    const_ids: Dict[Any, str] = {}

    def const(value: Any) -> str:
        try:
            key = (type(value), value)
            hash(key)
        except TypeError:
            key = ("id", id(value))  # consts keeps the value alive, so the id stays its own
        if key not in const_ids:
            cname = f"K{len(consts)}"
            consts[cname] = value
            const_ids[key] = cname
        return const_ids[key]

    funcs: Dict[Any, str] = {}

    def func(overload) -> str:
        if overload not in funcs:
            fname = f"F{len(funcs)}"
            funcs[overload] = fname
            consts[fname] = kernel(overload)
        return funcs[overload]

    def render(value: Any, var: str = "v") -> str:
        if isinstance(value, _Ref):
            return f"{var}{value.tid}"
        if isinstance(value, float) and value in slots:
            return f"P[{slots[value]}]"
        if isinstance(value, (list, tuple)) and any(isinstance(v, _Ref) for v in value):
            return "[" + ", ".join(render(v, var) for v in value) + "]"
        lit = _literal(value)
        if lit is not None:
            return lit
        consts_key = const(value)
        return consts_key

    sources = [t.id for t in g.tensors if t.producer is None]
    for tid in sources:
        if g.tensors[tid].alias_of is not None:
            raise Error(f"graph '{g.name}': source '{g.tensors[tid].name}' aliases another tensor; cannot compile")
    persistent = {tid for tid in sources if g.tensors[tid].role in _PERSISTENT_ROLES}

    lines: List[str] = []
    emit = lines.append
    bound: Dict[int, Set[int]] = {}  # storage root -> tensor ids with a live variable
    for tid in sources:
        bound.setdefault(root[tid], set()).add(tid)
    on_host: Dict[int, List[int]] = {}  # storage root -> tensor ids to re-create at swap-in
    kept_on_swap: Set[int] = set()  # persistent roots "swapped out": variables kept
    pending_wait: Set[int] = set()  # CUDA: swapped-in roots the main stream has not waited for

    # Random ops (the graph's op flags): first computes in plan order against program
    # order. A plan that recomputes nothing and keeps program order needs no flags
    # (a program-order plan of a graph captured without the native module).
    steps = p.steps
    computes = [s["op"] for s in steps if s["kind"] == "compute"]
    flags = None
    if any(s["kind"] == "recompute" for s in steps) or computes != sorted(computes):
        flags = op_flags(g, "compiling a plan that recomputes or reorders ops")
    first_compute: Dict[int, int] = {}
    recomputed: Set[int] = set()
    for i, s in enumerate(steps):
        if s["kind"] in ("compute", "recompute"):
            op = g.ops[s["op"]]
            if flags is None or not flags[op.id].random:
                continue
            if s["kind"] == "compute" and op.id not in first_compute:
                first_compute[op.id] = i
            elif s["kind"] == "recompute":
                recomputed.add(op.id)
    random_in_plan_order = sorted(first_compute, key=first_compute.get)
    reorders = random_in_plan_order != sorted(first_compute)
    rng_get, rng_set = ("_cuda_get_rng", "_cuda_set_rng") if dev.type == "cuda" else ("_get_rng", "_set_rng")

    def call_expr(op: Op, var: str = "v") -> Tuple[str, Any]:
        b, kwargs = op_kwargs(ctx, op, lambda tid: _Ref(tid), None, str(dev))
        args = _positional_for(b.overload, kwargs)
        parts = [render(a, var) for a in args] + [f"{k}={render(v, var)}" for k, v in kwargs.items()]
        return f"{func(b.overload)}({', '.join(parts)})", b.overload

    def check_inputs(op: Op, step: int) -> None:
        for tid in dict.fromkeys(op.inputs):
            r = root[tid]
            if tid not in bound.get(r, ()):
                where = "on host (swapped out)" if r in on_host else "freed or not computed"
                raise Error(f"steps[{step}]: op '{op.name}' ({op.qualified_type}): input '{g.tensors[tid].name}' "
                            f"is {where}")
            if r in pending_wait:
                emit(f"    _rt.wait({r})")
                pending_wait.discard(r)

    # detach and alias make a new tensor object with the input's storage and
    # metadata; the step runs without autograd, so the input itself serves and
    # the dispatch is saved (683 of the 1,689 ops of a captured resnet-50 step).
    # Not for a graph output (the caller gets its own object), nor in a graph
    # that changes a tensor's metadata in place (t_, squeeze_, ...: both would change).
    same_object = {"aten.detach", "aten.alias"}
    if any(op.type.startswith("aten.") and op.type[5:] in METADATA_INPLACE for op in g.ops):
        same_object = set()
    graph_outputs = set(g.outputs)

    def emit_call(op: Op, step: int) -> None:
        if op.type in same_object and len(op.inputs) == 1 and op.outputs and op.outputs[0] not in graph_outputs:
            emit(f"    v{op.outputs[0]} = v{op.inputs[0]}")
            bound.setdefault(root[op.outputs[0]], set()).add(op.outputs[0])
            return
        expr, overload = call_expr(op)
        if not op.outputs:
            emit(f"    {expr}")
            return
        single, idx = _result_indices(op, overload)
        if single:
            emit(f"    v{op.outputs[0]} = {expr}")
        else:
            emit(f"    _r = {expr}")
            for tid, i in zip(op.outputs, idx):
                emit(f"    v{tid} = _r[{i}]")
            emit("    del _r")
        for tid in op.outputs:
            bound.setdefault(root[tid], set()).add(tid)

    if reorders:
        # Eager's draws, in program order, on scratch tensors: the generator state before each.
        for oid in sorted(first_compute):
            op = g.ops[oid]
            scratch = []
            for tid in dict.fromkeys(op.inputs):
                t = g.tensors[tid]
                scratch.append((tid, const(torch.Size(t.shape)), const(_dtype(t.dtype))))
            emit(f"    _rng{oid} = {rng_get}()")
            for tid, shape_c, dtype_c in scratch:
                emit(f"    s{tid} = _zeros({shape_c}, dtype={dtype_c}, device=_dev)")
            emit(f"    {call_expr(op, 's')[0]}")
            if scratch:
                emit(f"    del {', '.join(f's{tid}' for tid, _, _ in scratch)}")
        emit(f"    _rng_end = {rng_get}()")

    def emit_step(i: int, s: Dict[str, Any]) -> None:
        kind = s["kind"]
        if kind in ("compute", "recompute"):
            op = g.ops[s["op"]]
            check_inputs(op, i)
            emit(f"    # steps[{i}] {kind} {op.name} ({op.qualified_type})")
            restore = []
            if kind == "recompute":
                # Writes to the inputs the op mutates are undone (memfit.runner's rule).
                for tid in dict.fromkeys(op.inputs[k] for k in flags[op.id].mutates):
                    restore.append(tid)
                    emit(f"    _k{tid} = v{tid}.clone()")
            is_random = flags is not None and flags[op.id].random
            if is_random and kind == "recompute":
                if op.id not in first_compute or first_compute[op.id] > i:
                    raise Error(f"steps[{i}]: recompute of '{op.name}' before its compute")
                emit(f"    _saved = {rng_get}()")
                emit(f"    {rng_set}(_rng{op.id})")
                emit_call(op, i)
                emit(f"    {rng_set}(_saved)")
            elif is_random and reorders and first_compute.get(op.id) == i:
                emit(f"    {rng_set}(_rng{op.id})")
                emit_call(op, i)
            else:
                if is_random and op.id in recomputed and first_compute.get(op.id) == i:
                    emit(f"    _rng{op.id} = {rng_get}()")
                emit_call(op, i)
            for tid in restore:
                emit(f"    v{tid}.copy_(_k{tid})")
                emit(f"    del _k{tid}")
        else:
            r = root[s["storage"]]
            names = sorted(bound.get(r, ()))
            if kind == "free":
                if names:
                    emit(f"    del {', '.join(f'v{t}' for t in names)}  # steps[{i}] free {g.tensors[r].name}")
                bound.pop(r, None)
                if r in on_host:
                    emit(f"    del _h{r}, _m{r}")
                    on_host.pop(r)
                pending_wait.discard(r)
                kept_on_swap.discard(r)
            elif kind == "swap_out":
                if not names:
                    raise Error(f"steps[{i}]: swap_out of '{g.tensors[r].name}', which is not on the device")
                if r in persistent:
                    kept_on_swap.add(r)  # the caller holds it: nothing to copy, nothing freed
                    return
                emit(f"    # steps[{i}] swap_out {g.tensors[r].name}")
                if r in pending_wait:
                    emit(f"    _rt.wait({r})")
                    pending_wait.discard(r)
                emit(f"    _m{r} = _views_meta({', '.join(f'v{t}' for t in names)})")
                emit(f"    _h{r} = _rt.swap_out({r}, v{names[0]})")
                emit(f"    del {', '.join(f'v{t}' for t in names)}")
                on_host[r] = names
                bound.pop(r)
            else:  # swap_in
                if r in persistent and r in kept_on_swap:
                    kept_on_swap.discard(r)
                    return
                if r not in on_host:
                    raise Error(f"steps[{i}]: swap_in of '{g.tensors[r].name}', which has no host copy")
                names = on_host.pop(r)
                emit(f"    # steps[{i}] swap_in {g.tensors[r].name}")
                targets = ", ".join(f"v{t}" for t in names)
                emit(f"    {targets}, = _rt.swap_in({r}, _h{r}, _m{r})")
                emit(f"    del _h{r}, _m{r}")
                bound[r] = set(names)
                if dev.type == "cuda":
                    pending_wait.add(r)

    for i, s in enumerate(steps):
        begin = len(lines)
        emit_step(i, s)
        if timer is not None and len(lines) > begin:
            lines.insert(begin, "    _t = _clk()")
            emit(f"    _T[{i}].append(_clk() - _t)")

    outputs = list(g.outputs)
    for tid in outputs:
        if tid not in bound.get(root[tid], ()):
            raise Error(f"graph output '{g.tensors[tid].name}' was not computed, or was freed or swapped out")
        if root[tid] in pending_wait:
            emit(f"    _rt.wait({root[tid]})")
            pending_wait.discard(root[tid])
    if reorders:
        emit(f"    {rng_set}(_rng_end)")
    emit(f"    return ({', '.join(f'v{t}' for t in outputs)}{',' if len(outputs) == 1 else ''})")

    header = [f"def {name}(S, P):"]
    if sources:
        header.append(f"    {', '.join(f'v{t}' for t in sources)}, = S")
    src = "\n".join(header + lines) + "\n"
    runtime = SwapRuntime(dev)
    namespace: Dict[str, Any] = dict(consts)
    namespace.update(_rt=runtime, _views_meta=_views_meta, _zeros=torch.zeros, _dev=dev,
                     _get_rng=torch.get_rng_state, _set_rng=torch.set_rng_state)
    step_times = None
    if timer is not None:
        step_times = [[] for _ in steps]
        namespace.update(_clk=timer, _T=step_times)
    if dev.type == "cuda":
        namespace.update(_cuda_get_rng=lambda: torch.cuda.get_rng_state(dev),
                         _cuda_set_rng=lambda s: torch.cuda.set_rng_state(s, dev))
    code = compile(src, f"<memfit plan of {g.name}>", "exec")
    exec(code, namespace)
    return CompiledPlan(g, src, namespace[name], sources, outputs, dev, runtime, reorders, slots, step_times)


def _dtype(name: str) -> torch.dtype:
    from .runner import DTYPES

    return DTYPES[name]
