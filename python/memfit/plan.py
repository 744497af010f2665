"""Runs a memfit plan (PLAN.json, ``memfit plan G.json -o PLAN.json``) with PyTorch.

A plan is a graph plus a list of steps (src/sim/plan.h), executed in order:

  - ``compute`` runs the op as memfit.run does;
  - ``recompute`` runs the op again; its outputs replace the previous values
    (a random op such as dropout replays the RNG state of its first run, so a
    recomputed mask equals the original; writes to buffers such as BatchNorm's
    running statistics are undone, so they are updated once);
  - ``swap_out`` copies the storage to host memory and drops every device
    tensor of that storage; ``swap_in`` copies it back and re-creates every
    tensor (view) of the storage that was live at the swap-out;
  - ``free`` drops every tensor of the storage (and its host copy).

A storage is named by any of its tensors; like the simulator, the executor
uses its root (``Graph.storage_root``). Nothing is dropped except by the
plan's own free / swap_out steps, so the executor's memory follows the plan.

With ``arena=True`` and a plan with buffers, the executor allocates one flat
``torch.uint8`` buffer of ``arena_bytes`` and every placed storage lives at its
byte offset (``arena[off:off+n].view(dtype).view(shape)``). A storage may be
on the device several times (computed, freed, recomputed; swapped out and
back in): each stay is an instance with its own buffer, and a storage
(re)created at step i uses its buffer whose [start, end) covers i (PLAN.json
version 2, docs/plan-format.md; a version 1 plan has one buffer per storage,
used for every stay). Sources are copied in at the start; an op whose new
storages are all placed runs through its ATen
``out=`` variant (``aten.addmm.out``) writing straight into the arena, and
other ops compute and then ``copy_`` into their arena views
(``PlanRun.copied_op_types`` lists those op types). A placement check runs at
every allocation: re-creating a storage whose bytes overlap a live one is a
memfit.Error, so a wrong plan fails instead of silently corrupting values.

Memory accounting (``PlanRun.peak_bytes``): after every step the executor sums
the bytes of the distinct torch storages referenced by live device tensors
(generated sources included; host copies counted apart in
``peak_host_bytes``). Op-internal temporaries and workspaces are not seen; in
arena mode the arena counts in full.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import torch

from .executor import (DTYPES, FLOATING, _Context, _results, call_overload, check_results, make_source, op_kwargs,
                       resolve_overload, tensor_nbytes)
from .graph import Error, Graph, Op, from_dict

PLAN_FORMAT = "memfit.plan"

# Ops that draw from torch's RNG: a recompute replays the RNG state of the first run.
RANDOM_OPS = {"aten.bernoulli", "aten.bernoulli_", "aten.native_dropout", "aten.dropout", "aten.rand", "aten.randn",
              "aten.rand_like", "aten.randn_like", "aten.randint", "aten.randint_like", "aten.randperm",
              "aten.normal", "aten.normal_", "aten.uniform_", "aten.multinomial", "aten.feature_dropout"}

# Roles never freed by a plan: their final values are copied back to caller tensors after an arena run.
_PERSISTENT_ROLES = ("parameter", "buffer", "optimizer_state")


@dataclass
class Buffer:
    storage: int
    offset: int
    size: int
    start: int
    end: int


@dataclass
class Plan:
    graph: Graph
    steps: List[Dict[str, Any]]
    # By storage root, the buffers of its instances sorted by start step;
    # workspace buffers are left out.
    buffers: Dict[int, List[Buffer]]
    arena_bytes: int = 0
    simulated: Optional[Dict[str, Any]] = None
    raw: Dict[str, Any] = field(default_factory=dict)
    version: int = 2

    def buffer_at(self, storage: int, step: int) -> Optional[Buffer]:
        """The buffer of `storage` (a root) for an instance created at `step`:
        the one whose [start, end) covers it (version 1: its only buffer);
        None when the storage has no buffer at all."""
        found = self.buffers.get(storage)
        if not found:
            return None
        if self.version == 1:
            return found[0]
        for b in found:
            if b.start <= step < b.end:
                return b
        raise Error(f"steps[{step}]: storage '{self.graph.tensors[storage].name}' is placed on the device at "
                    f"step {step}, but none of its buffers covers that step")


def is_plan(value) -> bool:
    """True for a Plan, a plan dict, or a path to a PLAN.json."""
    if isinstance(value, Plan):
        return True
    if isinstance(value, dict):
        return value.get("format") == PLAN_FORMAT
    if isinstance(value, (str, os.PathLike)):
        try:
            with open(value) as f:
                head = f.read(4096)
        except OSError:
            return False
        return f'"format":"{PLAN_FORMAT}"' in "".join(head.split())
    return False


def load_plan(plan) -> Plan:
    """Reads a plan from a path, a dict or a Plan; memfit.Error names the file and field."""
    if isinstance(plan, Plan):
        return plan
    source = "<dict>"
    if isinstance(plan, (str, os.PathLike)):
        source = str(plan)
        try:
            with open(plan) as f:
                plan = json.load(f)
        except (OSError, ValueError) as e:
            raise Error(f"{source}: cannot read plan: {e}") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise Error(f"{source}: not a memfit plan (field 'format' must be \"{PLAN_FORMAT}\")")
    version = plan.get("version", 2)
    if version not in (1, 2):
        raise Error(f"{source}: version: unsupported version {version!r} (1 or 2)")
    for key in ("graph", "steps"):
        if key not in plan:
            raise Error(f"{source}: missing field '{key}'")
    g = from_dict(plan["graph"], source)
    steps = plan["steps"]
    for i, s in enumerate(steps):
        kind = s.get("kind")
        if kind in ("compute", "recompute"):
            if not isinstance(s.get("op"), int) or not 0 <= s["op"] < len(g.ops):
                raise Error(f"{source}: steps[{i}].op: must be an op id of the graph")
        elif kind in ("swap_out", "swap_in", "free"):
            if not isinstance(s.get("storage"), int) or not 0 <= s["storage"] < len(g.tensors):
                raise Error(f"{source}: steps[{i}].storage: must be a tensor id of the graph")
        else:
            raise Error(f"{source}: steps[{i}].kind: unknown step kind {kind!r} "
                        f"(compute, recompute, swap_out, swap_in, free)")
    buffers: Dict[int, List[Buffer]] = {}
    for i, b in enumerate(plan.get("buffers", [])):
        if "storage" not in b:
            continue  # an op's workspace: the executor has none to place
        root = g.storage_root(b["storage"])
        new = Buffer(root, b["offset"], b["size"], b["start"], b["end"])
        for other in buffers.get(root, []):
            # Version 1: one buffer per storage; version 2: one per instance, disjoint in steps.
            if version == 1 or (other.start < new.end and new.start < other.end):
                raise Error(f"{source}: buffers[{i}]: storage '{g.tensors[root].name}' is placed twice over "
                            f"steps [{max(other.start, new.start)}, {min(other.end, new.end)})")
        buffers.setdefault(root, []).append(new)
    for found in buffers.values():
        found.sort(key=lambda b: b.start)
    return Plan(g, steps, buffers, int(plan.get("arena_bytes", 0)), plan.get("simulated"), plan, version)


def program_order_plan(graph) -> Plan:
    """The plan `memfit plan` writes for program order, without buffers: every op
    once, each storage freed right after its last use (parameters, buffers,
    optimizer states and graph outputs' storages never; a storage nobody reads
    right after its producer). Frees after one op are sorted by storage id."""
    from .graph import load
    g = load(graph)
    root = [g.storage_root(t.id) for t in g.tensors]
    last: Dict[int, int] = {}
    for op in g.ops:
        for tid in list(op.inputs) + list(op.outputs):
            last[root[tid]] = op.id
    pinned = {root[t] for t in g.outputs}
    pinned |= {t.id for t in g.tensors if t.alias_of is None and t.role in _PERSISTENT_ROLES}
    frees: Dict[int, List[int]] = {}
    for r, step in last.items():
        if r not in pinned:
            frees.setdefault(step, []).append(r)
    steps: List[Dict[str, Any]] = []
    for op in g.ops:
        steps.append({"kind": "compute", "op": op.id})
        steps.extend({"kind": "free", "storage": r} for r in sorted(frees.get(op.id, [])))
    return Plan(g, steps, {})


@dataclass
class PlanRun:
    outputs: Dict[str, torch.Tensor]
    peak_bytes: int = 0  # largest sum of live device storages after a step
    peak_host_bytes: int = 0  # largest sum of host copies (swap)
    peak_step: int = -1
    out_variant_op_types: Set[str] = field(default_factory=set)  # arena: ran with out= into the arena
    copied_op_types: Set[str] = field(default_factory=set)  # arena: computed, then copied into the arena
    arena_bytes: int = 0
    bytes_after_step: List[int] = field(default_factory=list)  # live device bytes after each step (track_memory)


_OUT_VARIANTS: Dict[Tuple[str, str], Any] = {}
# (op type, overload, device type) whose out= overload has no kernel for that device.
_NO_OUT_KERNEL: Set[Tuple[str, str, str]] = set()


def out_variant(op: Op):
    """The ATen out= overload with the same arguments as `op`'s functional one, or None."""
    key = (op.type, op.overload)
    if key in _OUT_VARIANTS:
        return _OUT_VARIANTS[key]
    functional = resolve_overload(op)
    want = [(a.name, str(a.type)) for a in functional._schema.arguments]
    packet = getattr(torch.ops.aten, op.type.partition(".")[2])
    found = None
    for name in packet.overloads():
        ov = getattr(packet, name)
        args = ov._schema.arguments
        outs = [a for a in args if a.kwarg_only and a.alias_info is not None and a.alias_info.is_write]
        rest = [(a.name, str(a.type)) for a in args if not (a.kwarg_only and a.alias_info is not None
                                                            and a.alias_info.is_write)]
        if outs and rest == want and all(str(a.type) == "Tensor" for a in outs):
            found = (ov, [a.name for a in outs])
            break
    _OUT_VARIANTS[key] = found
    return found


def _storage_key(t: torch.Tensor) -> Tuple[int, int]:
    s = t.storage()
    return s.data_ptr(), s.nbytes()


def _live_bytes(tensors) -> int:
    seen: Dict[int, int] = {}
    for t in tensors:
        ptr, n = _storage_key(t)
        seen[ptr] = max(seen.get(ptr, 0), n)
    return sum(seen.values())


def _whole_storage(t: torch.Tensor) -> torch.Tensor:
    """A flat uint8 tensor over all of t's storage."""
    flat = torch.empty(0, dtype=t.dtype, device=t.device).set_(t.storage())
    return flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat


def execute(plan, inputs: Optional[Mapping[str, torch.Tensor]] = None, *, seed: int = 0,
            dtype: Optional[torch.dtype] = None, device: Optional[str] = None, arena: bool = False,
            generate: bool = True, check: bool = True, track_memory: bool = True) -> PlanRun:
    """Executes `plan` (path, dict, Plan) step by step; see the module docstring.

    inputs, seed, dtype, device, generate, check: as for memfit.run.
    arena: place every storage the plan places in one uint8 arena (needs a
        plan with buffers and dtype None).
    track_memory: measure live device bytes after every step.
    """
    p = load_plan(plan)
    g = p.graph
    ctx = _Context(g)
    dev = device or "cpu"
    use_arena = arena and bool(p.buffers)
    if arena and not p.buffers:
        raise Error(f"plan of graph '{g.name}' has no buffers; arena=True needs a plan from `memfit plan`")
    if use_arena and dtype is not None:
        raise Error("arena=True runs every tensor in its declared dtype; dtype= would change the byte sizes")
    root = [g.storage_root(t.id) for t in g.tensors]
    by_name = {t.name: t for t in g.tensors}
    unknown = sorted(n for n in (inputs or {}) if n not in by_name)
    if unknown:
        raise Error(f"graph '{g.name}' has no tensor named {', '.join(repr(n) for n in unknown)}")
    env: Dict[int, torch.Tensor] = {}
    given: Dict[int, torch.Tensor] = {}
    for name, value in (inputs or {}).items():
        t = by_name[name]
        if not isinstance(value, torch.Tensor):
            raise Error(f"input '{name}' is a {type(value).__name__}, not a torch.Tensor")
        if list(value.shape) != list(t.shape):
            raise Error(f"input '{name}' has shape {list(value.shape)}, the graph declares {list(t.shape)}")
        given[t.id] = value
        if dtype is not None and t.dtype in FLOATING and value.dtype != dtype:
            value = value.detach().to(dtype)
        env[t.id] = value

    run = PlanRun({}, arena_bytes=p.arena_bytes if use_arena else 0)
    arena_u8: Optional[torch.Tensor] = None
    live_regions: Dict[int, Tuple[int, int]] = {}  # arena: storage root -> [offset, offset+nbytes)
    current: Dict[int, Buffer] = {}  # arena: storage root -> the buffer of its instance on the device

    def region(r: int) -> torch.Tensor:
        b = current[r]
        return arena_u8[b.offset:b.offset + b.size]

    def arena_view(r: int) -> torch.Tensor:
        t = g.tensors[r]
        b = current[r]
        n = tensor_nbytes(g, r)
        if n > b.size:
            raise Error(f"buffer of '{t.name}' holds {b.size} bytes, the tensor needs {n}")
        return arena_u8[b.offset:b.offset + n].view(DTYPES[t.dtype]).view(list(t.shape))

    def occupy(r: int, step: int, why: str) -> bool:
        """Places a new instance of storage r created at `step` in its buffer;
        False when the plan does not place r. An instance still live keeps its bytes."""
        if r in live_regions:
            return True
        b = p.buffer_at(r, step)
        if b is None:
            return False
        lo, hi = b.offset, b.offset + tensor_nbytes(g, r)
        for other, (olo, ohi) in live_regions.items():
            if lo < ohi and olo < hi:
                raise Error(f"{why}: '{g.tensors[r].name}' at arena bytes [{lo}, {hi}) overlaps live "
                            f"'{g.tensors[other].name}' at [{olo}, {ohi})")
        live_regions[r] = (lo, hi)
        current[r] = b
        return True

    if use_arena:
        arena_u8 = torch.empty(p.arena_bytes, dtype=torch.uint8, device=dev)
        for r in sorted(p.buffers):
            t = g.tensors[r]
            if t.producer is not None:
                continue
            value = env.get(r)
            if value is None:
                if not generate:
                    raise Error(f"missing input '{t.name}' ({t.role} {t.dtype}{list(t.shape)})")
                value = make_source(g, r, seed or 0, None, dev, ctx)
            occupy(r, 0, "placing sources")
            view = arena_view(r)
            view.copy_(value)
            env[r] = view

    if seed is not None:
        torch.manual_seed(seed)
    rng_states: Dict[int, torch.Tensor] = {}
    host: Dict[int, Tuple[torch.Tensor, List[Tuple[int, torch.dtype, List[int], List[int], int]]]] = {}

    def fetch(op: Op, tid: int) -> torch.Tensor:
        if tid in env:
            return env[tid]
        t = g.tensors[tid]
        if t.producer is not None or t.alias_of is not None:
            where = "on host (swapped out)" if root[tid] in host else "freed or not computed"
            raise Error(f"op '{op.name}' ({op.qualified_type}): input '{t.name}' is {where}")
        if not generate:
            raise Error(f"missing input '{t.name}' ({t.role} {t.dtype}{list(t.shape)}) for op '{op.name}'")
        env[tid] = make_source(g, tid, seed or 0, dtype, dev, ctx)
        return env[tid]

    def drop_storage(r: int) -> None:
        for tid in [tid for tid in env if root[tid] == r]:
            del env[tid]
        live_regions.pop(r, None)
        current.pop(r, None)

    def run_op(op: Op, step: int) -> None:
        b, kwargs = op_kwargs(ctx, op, lambda tid: fetch(op, tid), dtype, device)
        placed = [tid for tid in op.outputs if g.tensors[tid].alias_of is None and root[tid] in p.buffers]
        if not (use_arena and placed):
            results = _results(op, call_overload(op, b.overload, kwargs))
            if check:
                check_results(g, op, results, dtype)
            for tid, value in zip(op.outputs, results):
                env[tid] = value
            return
        for tid in placed:
            occupy(tid, step, f"steps[{step}] op '{op.name}'")
        views = {tid: arena_view(tid) for tid in placed}
        variant = out_variant(op)
        mask = op.attrs.get("output_mask")
        no_kernel = (op.type, op.overload, str(arena_u8.device.type))
        if (variant is not None and len(placed) == len(op.outputs) == len(variant[1])
                and (mask is None or all(mask)) and no_kernel not in _NO_OUT_KERNEL):
            ov, out_names = variant
            out_kwargs = dict(kwargs)
            out_kwargs.update({name: views[tid] for name, tid in zip(out_names, op.outputs)})
            ptrs = [v.data_ptr() for v in views.values()]
            try:
                call_overload(op, ov, out_kwargs)
            except Error as e:
                if "Could not run" not in str(e):
                    raise
                _NO_OUT_KERNEL.add(no_kernel)  # e.g. native_batch_norm.out has no CPU kernel in torch 1.13
            else:
                if [v.data_ptr() for v in views.values()] != ptrs or any(
                        list(views[tid].shape) != list(g.tensors[tid].shape) for tid in placed):
                    raise Error(f"op '{op.name}' ({op.qualified_type}): {ov} resized its output out of the arena")
                run.out_variant_op_types.add(op.qualified_type)
                for tid in op.outputs:
                    env[tid] = views[tid]
                return
        results = _results(op, call_overload(op, b.overload, kwargs))
        if check:
            check_results(g, op, results, dtype)
        for tid, value in zip(op.outputs, results):
            if tid in views:
                views[tid].copy_(value)
                env[tid] = views[tid]
            else:
                env[tid] = value
        run.copied_op_types.add(op.qualified_type)

    def account(step: int) -> None:
        if not track_memory:
            return
        device_bytes = _live_bytes(env.values())
        if step >= 0:
            run.bytes_after_step.append(device_bytes)
        if device_bytes > run.peak_bytes:
            run.peak_bytes, run.peak_step = device_bytes, step
        run.peak_host_bytes = max(run.peak_host_bytes, sum(h.numel() for h, _ in host.values()))

    account(-1)
    for i, s in enumerate(p.steps):
        kind = s["kind"]
        if kind in ("compute", "recompute"):
            op = g.ops[s["op"]]
            if kind == "compute" and op.outputs and all(o in given for o in op.outputs):
                continue  # results given by the caller
            # A recomputation must not write persistent state a second time
            # (BatchNorm's running statistics): those writes are undone.
            kept = []
            if kind == "recompute":
                for tid in dict.fromkeys(op.inputs):
                    if g.tensors[root[tid]].role == "buffer" and tid in env:
                        kept.append((env[tid], env[tid].clone()))
            if op.type in RANDOM_OPS:
                if kind == "compute":
                    rng_states[op.id] = torch.get_rng_state()
                    run_op(op, i)
                else:
                    if op.id not in rng_states:
                        raise Error(f"steps[{i}]: recompute of '{op.name}' before its compute")
                    saved = torch.get_rng_state()
                    torch.set_rng_state(rng_states[op.id])
                    run_op(op, i)
                    torch.set_rng_state(saved)
            else:
                run_op(op, i)
            for tensor, before in kept:
                tensor.copy_(before)
        else:
            r = root[s["storage"]]
            name = g.tensors[r].name
            if kind == "free":
                drop_storage(r)
                host.pop(r, None)
            elif kind == "swap_out":
                live = [tid for tid in env if root[tid] == r]
                if not live:
                    raise Error(f"steps[{i}]: swap_out of '{name}', which is not on the device")
                base = region(r) if use_arena and r in current else _whole_storage(env[live[0]])
                aliases = []
                for tid in live:
                    t = env[tid]
                    off = t.data_ptr() - base.data_ptr()
                    aliases.append((tid, t.dtype, list(t.shape), list(t.stride()), off // t.element_size()))
                host[r] = (base.to("cpu", copy=True), aliases)
                drop_storage(r)
            else:  # swap_in
                if r not in host:
                    raise Error(f"steps[{i}]: swap_in of '{name}', which has no host copy")
                data, aliases = host.pop(r)
                if use_arena and occupy(r, i, f"steps[{i}] swap_in"):
                    base = region(r)
                    base.copy_(data)
                else:
                    base = data.to(dev, copy=True)
                for tid, dt, shape, stride, elem_off in aliases:
                    typed = base.view(dt)
                    env[tid] = typed.as_strided(shape, stride, typed.storage_offset() + elem_off)
        account(i)

    out: Dict[str, torch.Tensor] = {}
    for tid in g.outputs:
        if tid not in env:
            raise Error(f"graph output '{g.tensors[tid].name}' was not computed, or was freed or swapped out")
        value = env[tid].clone() if use_arena else env[tid]
        out[g.tensors[tid].name] = value
        r = root[tid]
        if r != tid and g.tensors[r].producer is None:
            out[g.tensors[r].name] = value
    if use_arena:
        # In-place updates went to the arena copies: copy them back to the caller's tensors.
        for tid, value in given.items():
            t = g.tensors[tid]
            if t.role in _PERSISTENT_ROLES and tid in env and value.dtype == env[tid].dtype:
                with torch.no_grad():
                    value.copy_(env[tid])
    run.outputs = out
    return run
