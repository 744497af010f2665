"""Runs a memfit plan (PLAN.json, ``memfit plan G.json -o PLAN.json``) with PyTorch.

A plan is a graph plus a list of steps (src/plan/steps.h; read by
memfit.plan_file, whose names this module re-exports), executed in order by a
PlanRunner:

  - ``compute`` runs the op with the shared op runner, as memfit.run does;
  - ``recompute`` runs the op again; its outputs replace the previous values
    (memfit.runner's rerun rules, from the graph's op flags: a random op such
    as dropout replays the RNG state of its first run, so a recomputed mask
    equals the original; writes to inputs the op mutates, such as BatchNorm's
    running statistics, are undone, so they are updated once);
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

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Set, Tuple

import torch

from .graph import Error, Op
from .plan_file import (PERSISTENT_ROLES, PLAN_FORMAT, Buffer, Plan, is_plan, load_plan,  # noqa: F401
                        program_order_plan)
from .runner import (DTYPES, OpRunner, call_overload, check_results, out_variant, outputs_by_name,  # noqa: F401
                     results_of, storage_key, take_inputs, tensor_nbytes)
from .sources import make_source


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


# (op type, overload, device type) whose out= overload has no kernel for that device.
_NO_OUT_KERNEL: Set[Tuple[str, str, str]] = set()

# A swapped-out storage: its bytes on the host, and (tensor id, dtype, shape, strides,
# element offset) of each of its tensors that was live, re-created at the swap-in.
HostCopy = Tuple[torch.Tensor, List[Tuple[int, torch.dtype, List[int], List[int], int]]]


def _live_bytes(tensors) -> int:
    seen: Dict[int, int] = {}
    for t in tensors:
        ptr, n = storage_key(t)
        seen[ptr] = max(seen.get(ptr, 0), n)
    return sum(seen.values())


def _whole_storage(t: torch.Tensor) -> torch.Tensor:
    """A flat uint8 tensor over all of t's storage."""
    flat = torch.empty(0, dtype=t.dtype, device=t.device).set_(t.storage())
    return flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat


class PlanRunner:
    """The state of one execution of a plan: tensors on the device (env) and on the
    host, the arena's live regions, the figures. run() executes every step."""

    def __init__(self, plan, inputs: Optional[Mapping[str, torch.Tensor]] = None, *, seed: int = 0,
                 dtype: Optional[torch.dtype] = None, device: Optional[str] = None, arena: bool = False,
                 generate: bool = True, check: bool = True, track_memory: bool = True):
        self.p = p = load_plan(plan)
        self.g = g = p.graph
        self.seed, self.dtype, self.device = seed, dtype, device
        self.dev = device or "cpu"
        self.generate, self.check, self.track_memory = generate, check, track_memory
        self.use_arena = arena and bool(p.buffers)
        if arena and not p.buffers:
            raise Error(f"plan of graph '{g.name}' has no buffers; arena=True needs a plan from `memfit plan`")
        if self.use_arena and dtype is not None:
            raise Error("arena=True runs every tensor in its declared dtype; dtype= would change the byte sizes")
        recomputed = {s["op"] for s in p.steps if s["kind"] == "recompute"}
        self.ops = OpRunner(g, dtype=dtype, device=device, check=check, rerun_ops=recomputed)
        self.root = [g.storage_root(t.id) for t in g.tensors]
        self.env: Dict[int, torch.Tensor] = take_inputs(g, inputs, dtype)
        by_name = {t.name: t for t in g.tensors}
        self.given: Dict[int, torch.Tensor] = {by_name[n].id: v for n, v in (inputs or {}).items()}
        self.run_figures = PlanRun({}, arena_bytes=p.arena_bytes if self.use_arena else 0)
        self.arena_u8: Optional[torch.Tensor] = None
        self.live_regions: Dict[int, Tuple[int, int]] = {}  # arena: storage root -> [offset, offset+nbytes)
        self.current: Dict[int, Buffer] = {}  # arena: storage root -> the buffer of its instance on the device
        self.host: Dict[int, HostCopy] = {}

    # ---- the arena ----
    def region(self, r: int) -> torch.Tensor:
        b = self.current[r]
        return self.arena_u8[b.offset:b.offset + b.size]

    def arena_view(self, r: int) -> torch.Tensor:
        t = self.g.tensors[r]
        b = self.current[r]
        n = tensor_nbytes(self.g, r)
        if n > b.size:
            raise Error(f"buffer of '{t.name}' holds {b.size} bytes, the tensor needs {n}")
        return self.arena_u8[b.offset:b.offset + n].view(DTYPES[t.dtype]).view(list(t.shape))

    def occupy(self, r: int, step: int, why: str) -> bool:
        """Places a new instance of storage r created at `step` in its buffer;
        False when the plan does not place r. An instance still live keeps its bytes."""
        if r in self.live_regions:
            return True
        b = self.p.buffer_at(r, step)
        if b is None:
            return False
        lo, hi = b.offset, b.offset + tensor_nbytes(self.g, r)
        for other, (olo, ohi) in self.live_regions.items():
            if lo < ohi and olo < hi:
                raise Error(f"{why}: '{self.g.tensors[r].name}' at arena bytes [{lo}, {hi}) overlaps live "
                            f"'{self.g.tensors[other].name}' at [{olo}, {ohi})")
        self.live_regions[r] = (lo, hi)
        self.current[r] = b
        return True

    def place_sources(self) -> None:
        """Arena: copies every placed source into its buffer."""
        g, p = self.g, self.p
        self.arena_u8 = torch.empty(p.arena_bytes, dtype=torch.uint8, device=self.dev)
        for r in sorted(p.buffers):
            t = g.tensors[r]
            if t.producer is not None:
                continue
            value = self.env.get(r)
            if value is None:
                if not self.generate:
                    raise Error(f"missing input '{t.name}' ({t.role} {t.dtype}{list(t.shape)})")
                value = make_source(g, r, self.seed or 0, None, self.dev, self.ops.ctx)
            self.occupy(r, 0, "placing sources")
            view = self.arena_view(r)
            view.copy_(value)
            self.env[r] = view

    # ---- tensors ----
    def fetch(self, op: Op, tid: int) -> torch.Tensor:
        env = self.env
        if tid in env:
            return env[tid]
        t = self.g.tensors[tid]
        if t.producer is not None or t.alias_of is not None:
            where = "on host (swapped out)" if self.root[tid] in self.host else "freed or not computed"
            raise Error(f"op '{op.name}' ({op.qualified_type}): input '{t.name}' is {where}")
        if not self.generate:
            raise Error(f"missing input '{t.name}' ({t.role} {t.dtype}{list(t.shape)}) for op '{op.name}'")
        env[tid] = self.generated(tid)
        return env[tid]

    def generated(self, tid: int) -> torch.Tensor:
        """Source `tid` made from the seed, where the caller gave none (made when
        first needed: its first reader, or a swap_out before any)."""
        return make_source(self.g, tid, self.seed or 0, self.dtype, self.dev, self.ops.ctx)

    def drop_storage(self, r: int) -> None:
        for tid in [tid for tid in self.env if self.root[tid] == r]:
            del self.env[tid]
        self.live_regions.pop(r, None)
        self.current.pop(r, None)

    # ---- steps ----
    def run_op(self, op: Op, step: int) -> None:
        """Runs `op`, its new storages in the arena when the plan places them: through
        the op's out= variant when it has one, else computed and copied in."""
        g, env = self.g, self.env
        fetch = lambda tid: self.fetch(op, tid)  # noqa: E731
        placed = [tid for tid in op.outputs if g.tensors[tid].alias_of is None and self.root[tid] in self.p.buffers]
        if not (self.use_arena and placed):
            for tid, value in zip(op.outputs, self.ops.call(op, fetch)):
                env[tid] = value
            return
        b, kwargs = self.ops.kwargs(op, fetch)
        for tid in placed:
            self.occupy(tid, step, f"steps[{step}] op '{op.name}'")
        views = {tid: self.arena_view(tid) for tid in placed}
        variant = out_variant(op)
        mask = op.attrs.get("output_mask")
        no_kernel = (op.type, op.overload, str(self.arena_u8.device.type))
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
                self.run_figures.out_variant_op_types.add(op.qualified_type)
                for tid in op.outputs:
                    env[tid] = views[tid]
                return
        results = results_of(op, call_overload(op, b.overload, kwargs))
        if self.check:
            check_results(g, op, results, self.dtype)
        for tid, value in zip(op.outputs, results):
            if tid in views:
                views[tid].copy_(value)
                env[tid] = views[tid]
            else:
                env[tid] = value
        self.run_figures.copied_op_types.add(op.qualified_type)

    def compute(self, i: int, kind: str, op: Op) -> None:
        if kind == "compute" and op.outputs and all(o in self.given for o in op.outputs):
            return  # results given by the caller
        with self.ops.running(op, lambda tid: self.fetch(op, tid), rerun=kind == "recompute", where=f"steps[{i}]: "):
            self.run_op(op, i)

    def swap_out(self, i: int, r: int) -> None:
        live = [tid for tid in self.env if self.root[tid] == r]
        t = self.g.tensors[r]
        if not live and t.producer is None and t.alias_of is None and r not in self.host and self.generate:
            # A generated source no op has read yet (labels, which only the loss
            # reads): made now, as its first reader would make it, and swapped out.
            self.env[r] = self.generated(r)
            live = [r]
        if not live:
            raise Error(f"steps[{i}]: swap_out of '{t.name}', which is not on the device")
        base = self.region(r) if self.use_arena and r in self.current else _whole_storage(self.env[live[0]])
        aliases = []
        for tid in live:
            t = self.env[tid]
            off = t.data_ptr() - base.data_ptr()
            aliases.append((tid, t.dtype, list(t.shape), list(t.stride()), off // t.element_size()))
        self.host[r] = (base.to("cpu", copy=True), aliases)
        self.drop_storage(r)

    def swap_in(self, i: int, r: int) -> None:
        if r not in self.host:
            raise Error(f"steps[{i}]: swap_in of '{self.g.tensors[r].name}', which has no host copy")
        data, aliases = self.host.pop(r)
        if self.use_arena and self.occupy(r, i, f"steps[{i}] swap_in"):
            base = self.region(r)
            base.copy_(data)
        else:
            base = data.to(self.dev, copy=True)
        for tid, dt, shape, stride, elem_off in aliases:
            typed = base.view(dt)
            self.env[tid] = typed.as_strided(shape, stride, typed.storage_offset() + elem_off)

    def account(self, step: int) -> None:
        if not self.track_memory:
            return
        run = self.run_figures
        device_bytes = _live_bytes(self.env.values())
        if step >= 0:
            run.bytes_after_step.append(device_bytes)
        if device_bytes > run.peak_bytes:
            run.peak_bytes, run.peak_step = device_bytes, step
        run.peak_host_bytes = max(run.peak_host_bytes, sum(h.numel() for h, _ in self.host.values()))

    def run(self) -> PlanRun:
        if self.use_arena:
            self.place_sources()
        if self.seed is not None:
            torch.manual_seed(self.seed)
        self.account(-1)
        for i, s in enumerate(self.p.steps):
            kind = s["kind"]
            if kind in ("compute", "recompute"):
                self.compute(i, kind, self.g.ops[s["op"]])
            else:
                r = self.root[s["storage"]]
                if kind == "free":
                    self.drop_storage(r)
                    self.host.pop(r, None)
                elif kind == "swap_out":
                    self.swap_out(i, r)
                else:
                    self.swap_in(i, r)
            self.account(i)
        run = self.run_figures
        run.outputs = outputs_by_name(self.g, self.env, "was not computed, or was freed or swapped out",
                                      copy=self.use_arena)
        if self.use_arena:
            # In-place updates went to the arena copies: copy them back to the caller's tensors.
            for tid, value in self.given.items():
                t = self.g.tensors[tid]
                if t.role in PERSISTENT_ROLES and tid in self.env and value.dtype == self.env[tid].dtype:
                    with torch.no_grad():
                        value.copy_(self.env[tid])
        return run


def execute(plan, inputs: Optional[Mapping[str, torch.Tensor]] = None, *, seed: int = 0,
            dtype: Optional[torch.dtype] = None, device: Optional[str] = None, arena: bool = False,
            generate: bool = True, check: bool = True, track_memory: bool = True) -> PlanRun:
    """Executes `plan` (path, dict, Plan) step by step; see the module docstring.

    inputs, seed, dtype, device, generate, check: as for memfit.run.
    arena: place every storage the plan places in one uint8 arena (needs a
        plan with buffers and dtype None).
    track_memory: measure live device bytes after every step.
    """
    return PlanRunner(plan, inputs, seed=seed, dtype=dtype, device=device, arena=arena, generate=generate,
                      check=check, track_memory=track_memory).run()
