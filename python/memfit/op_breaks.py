"""Graph breaks at the op: a training step split where its Python reads a value.

memfit.segments breaks a step at module boundaries: the largest submodules
that read no value are planned segments and the rest is eager glue. A value
read inside a leaf module, or ops on parameters in the top-level forward
around a read, then stay eager and unplanned. OpSegmentedStep breaks at the
read itself:

  * every step, the model's forward and the loss run as eager PyTorch under a
    recording dispatch mode, with the parameters' requires_grad off (no
    autograd graph, nothing saved) and grad mode as the user's code sets it
    (each op records whether it ran under torch.no_grad);
  * the recorded ATen ops are cut into segments at each value read --
    `.item()`, `int()` / `float()` / `bool()` of a tensor (an `if`, a range()
    bound), torch.equal / allclose, `.tolist()`, `.numpy()` -- so a step
    is: segment, the Python-level read (run eagerly on the value the segment
    computed), segment, ...;
  * each segment with a differentiable input becomes one
    torch.autograd.Function over the tensors it reads from outside (the
    parameters, the inputs, earlier segments' results, constants): its
    forward returns the values already computed, its backward runs the
    segment's captured joint graph (its ops replayed from its inputs, then
    their backward) under memfit's plan, with the generator set back to the
    state at the segment's first op -- exact, as memfit.segments is;
  * a segment's capture and plan are cached by its signature (the ops, their
    constant arguments, input shapes / dtypes / strides / which need a
    gradient, and every output shape, so data-dependent shapes re-capture);
    the segment before a read keeps its plan when the value changes, the one
    after it re-captures for each value it has not seen.

Memory crossing segments: between the forward and the backward, a segment
holds only what it reads from outside (its input values; the tensors it
writes in place -- buffers -- as copies taken before the write). While
segment k's backward runs, the fixed bytes are the parameters and buffers,
the optimizer state, the inputs held by segments 0..k-1 (their backward has
not run), and the gradients of the parameters segments after k read. The
planner sees each segment's joint graph alone, under the limit less those
bytes (the same rule as memfit.segments; docs/python.md, "Graph breaks").

Refused (memfit.Error; memfit.fit then uses module-level breaks): a custom
autograd.Function (torch.utils.checkpoint, backward hooks) inside the step
-- its forward's ops would be differentiated instead of its backward -- and
an in-place write to a tensor that a segment before the break made, or to a
parameter or input (the gradient would have to flow through the write).
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .graph import Error
from .guards import _HOST_READS, _user_frame
from .segments import SegmentedStep, _bytes, _Call
from .side_effects import module_state_kept
from .torch_compat import with_gradient_hooks, written_args

# Ops whose result is a Python value read from tensor data: the breaks.
_READS = {"_local_scalar_dense": "a value read (.item(), int(), float(), a range() bound)",
          "item": "a value read (.item())", "is_nonzero": "bool(tensor) (an if on a tensor)",
          "equal": "torch.equal", "allclose": "torch.allclose"}


@dataclass
class _Op:
    func: Any
    spec: Any
    template: List[Tuple[str, Any]]  # per leaf: ("v", local id) or ("c", constant)
    outs: List[Optional[int]]  # per output leaf: local id of a tensor, None otherwise
    grad: bool  # grad mode when it ran


class _TapeSegment(nn.Module):
    """Recorded ops replayed on new input values; returns the segment's outputs."""

    def __init__(self, ops: List[_Op], inputs: List[int], outputs: List[int]):
        super().__init__()
        self.ops = ops
        self.inputs = inputs  # local ids of the inputs, in argument order
        self.outputs = outputs

    def forward(self, *inputs):
        env: Dict[int, Any] = dict(zip(self.inputs, inputs))
        for op in self.ops:
            leaves = [env[v] if kind == "v" else v for kind, v in op.template]
            args, kwargs = tree_unflatten(leaves, op.spec)
            with torch.set_grad_enabled(op.grad and torch.is_grad_enabled()):
                out = op.func(*args, **kwargs)
            for local, o in zip(op.outs, tree_flatten(out)[0]):
                if local is not None:
                    env[local] = o
        return tuple(env[v] for v in self.outputs)


@dataclass
class _Seg:
    """One segment of one step's recording."""

    ops: List[_Op] = field(default_factory=list)
    local: Dict[int, int] = field(default_factory=dict)  # vn -> local id
    inputs: List[int] = field(default_factory=list)  # vns read from outside, first-read order
    input_values: List[torch.Tensor] = field(default_factory=list)
    outputs: List[int] = field(default_factory=list)  # vns read after the segment
    out_values: Dict[int, torch.Tensor] = field(default_factory=dict)
    sig: List[Any] = field(default_factory=list)
    rng: Any = None
    cuda_rng: Any = None
    after: str = ""  # the read that ends it

    def local_of(self, vn: int) -> int:
        if vn not in self.local:
            self.local[vn] = len(self.local)
        return self.local[vn]


def _storage_ptr(t: torch.Tensor) -> int:
    try:
        return t.storage().data_ptr()
    except Exception:  # noqa: BLE001 - tensors without storage
        return 0


class _Recorder:
    """The dispatch mode's state while one step's forward and loss run."""

    def __init__(self, sources: Dict[int, Tuple[torch.Tensor, str]]):
        self.segments: List[_Seg] = []
        self.cur: Optional[_Seg] = None
        self.vn: Dict[int, Tuple[Any, int]] = {}  # id(tensor) -> (weakref, vn)
        self.kind: Dict[int, str] = {}  # vn -> "param" / "input" / "buffer" / "const" (absent: made by a segment)
        self.producer: Dict[int, int] = {}  # vn -> segment index
        self.by_vn: Dict[int, torch.Tensor] = {}  # vn -> parameter / input tensor (strong)
        self.pending: Dict[int, List[Tuple[_Seg, int]]] = {}  # storage ptr -> input refs not yet copied
        self.custom: List[str] = []
        self.reads: List[str] = []
        # The grad mode at the outermost torch call in progress (recording's function mode).
        self.user_grad: Optional[bool] = None
        for t, kind in sources.values():
            vn = self._new(t)
            self.kind[vn] = kind
            self.by_vn[vn] = t

    def _new(self, t: torch.Tensor) -> int:
        vn = getattr(self, "_next", 0)
        self._next = vn + 1
        self.vn[id(t)] = (weakref.ref(t), vn)
        return vn

    def lookup(self, t: torch.Tensor) -> int:
        entry = self.vn.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        vn = self._new(t)
        self.kind[vn] = "const"  # made outside any op (torch.tensor's data, a numpy array)
        return vn

    def read(self, how: str) -> None:
        where = f"{how} at {_user_frame()}"
        self.reads.append(where)
        if self.cur is not None:
            self.cur.after = where
            self.cur = None

    def op(self, func, args, kwargs):
        name = func.overloadpacket.__name__
        if name in _READS:
            self.read(_READS[name])
            return func(*args, **kwargs)
        if self.cur is None:
            self.cur = _Seg(rng=torch.get_rng_state())
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                self.cur.cuda_rng = torch.cuda.get_rng_state()
            self.segments.append(self.cur)
        seg, k = self.cur, len(self.segments) - 1
        leaves, spec = tree_flatten((args, kwargs))
        template: List[Tuple[str, Any]] = []
        sig: List[Any] = [str(func)]
        for x in leaves:
            if isinstance(x, torch.Tensor):
                vn = self.lookup(x)
                if vn not in seg.local:
                    seg.local_of(vn)
                    seg.inputs.append(vn)
                    # A buffer is copied as it is now: ops may write it without saying
                    # so in their schema (native_batch_norm's running statistics).
                    seg.input_values.append(x.clone() if self.kind.get(vn) == "buffer" else x)
                    self.pending.setdefault(_storage_ptr(x), []).append((seg, len(seg.input_values) - 1))
                    if vn in self.producer:
                        src = self.segments[self.producer[vn]]
                        if vn not in src.out_values:
                            src.outputs.append(vn)
                            src.out_values[vn] = x
                    sig.append(("in", self.kind.get(vn, "seg"), tuple(x.shape), x.dtype, x.stride(), x.device.type))
                template.append(("v", seg.local[vn]))
            else:
                template.append(("c", x))
                sig.append(("c", repr(x)))
        if name in _HOST_READS:
            for i in _HOST_READS[name]:
                if i < len(args) and isinstance(args[i], torch.Tensor):
                    sig.append(("host", args[i].tolist()))
        # An in-place write: refused where the gradient would have to flow through it
        # across a break; otherwise the inputs sharing its storage are copied first.
        written = written_args(func)
        for a, v in zip(func._schema.arguments, args):
            if a.name not in written or not isinstance(v, torch.Tensor):
                continue
            ptr = _storage_ptr(v)
            for s2, i in self.pending.get(ptr, []):
                vn = s2.inputs[i]
                if self.kind.get(vn) in ("param", "input") or (vn in self.producer and self.producer[vn] != k):
                    raise Error(f"op-level graph breaks: `{func}` at {_user_frame()} writes in place a tensor "
                                f"{'made before the break' if vn in self.producer else 'that is a ' + self.kind[vn]}"
                                f"; not supported")
            for s2, i in self.pending.pop(ptr, []):
                s2.input_values[i] = s2.input_values[i].clone()
        out = func(*args, **kwargs)
        outs: List[Optional[int]] = []
        for o in tree_flatten(out)[0]:
            if isinstance(o, torch.Tensor):
                if any(o is x for x in leaves):
                    vn = self.lookup(o)  # written in place: the same tensor
                else:
                    vn = self._new(o)
                    self.producer[vn] = k
                outs.append(seg.local_of(vn))
                sig.append(("out", tuple(o.shape), o.dtype))
            else:
                outs.append(None)
        # The grad mode the user's code set: an op outside aten (torchvision's roi_align)
        # is dispatched from its C++ autograd Function's forward, which turns grad mode
        # off; replayed so, it cut the gradient to what it read (a detector's backbone).
        grad = torch.is_grad_enabled() or (bool(self.user_grad) and func._schema.name.split("::")[0] != "aten")
        seg.ops.append(_Op(func, spec, template, outs, grad))
        seg.sig.append(tuple(sig))
        return out

    @contextlib.contextmanager
    def recording(self):
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        rec = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                return rec.op(func, args, kwargs or {})

        class _UserGradMode(TorchFunctionMode):
            # A torch call from the user's code: the grad mode it runs under.
            def __torch_function__(self, func, types, args=(), kwargs=None):
                outer = rec.user_grad is None
                if outer:
                    rec.user_grad = torch.is_grad_enabled()
                try:
                    return func(*args, **(kwargs or {}))
                finally:
                    if outer:
                        rec.user_grad = None

        def patched(how, original):
            def read(t, *a, **k):
                rec.read(how)
                return original(t, *a, **k)
            return read

        originals = {"tolist": torch.Tensor.tolist, "numpy": torch.Tensor.numpy}
        base_apply = torch._C._FunctionBase.__dict__["apply"]

        def apply(cls, *a, **k):
            if not issubclass(cls, _TapeFn):
                rec.custom.append(cls.__name__)
            return base_apply.__get__(None, cls)(*a, **k)

        torch.autograd.Function.apply = classmethod(apply)
        for how, original in originals.items():
            setattr(torch.Tensor, how, patched(f"`.{how}()`", original))
        try:
            with _UserGradMode(), _Mode():
                yield self
        finally:
            del torch.autograd.Function.apply
            for how, original in originals.items():
                setattr(torch.Tensor, how, original)


def _recorded_outputs(seg: _Seg, tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The values the recording computed for the segment's outputs; an output
    that is one of its inputs as a new tensor object (autograd needs one)."""
    ids = {id(t) for t in tensors}
    outs = [seg.out_values[vn] for vn in seg.outputs]
    return [o.view_as(o) if id(o) in ids else o for o in outs]


class _TapeFn(torch.autograd.Function):
    """One segment: forward returns the values the recording computed, backward
    runs the segment's planned joint graph (SegmentedStep._backward)."""

    @staticmethod
    def forward(ctx, runner, box, *tensors):
        seg, plan = box["seg"], box["plan"]
        ctx.runner, ctx.module, ctx.plan = runner, box["module"], plan
        ctx.leaf_is_tensor = [True] * len(tensors)
        ctx.buffers = {}
        ctx.device = next((t.device for t in tensors), torch.device("cpu"))
        ctx.rng = seg.rng
        ctx.cuda_rng = seg.cuda_rng if ctx.device.type == "cuda" else None  # untested: no GPU here
        ctx.values = seg.input_values
        outs = _recorded_outputs(seg, tensors)
        ctx.mark_non_differentiable(*[o for o, d in zip(outs, plan.diff) if not d])
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        return (None, None) + tuple(ctx.runner._backward(ctx, grads, ctx.values))


class _EagerTapeFn(torch.autograd.Function):
    """One segment run unplanned: forward returns the values the recording
    computed, backward replays the recorded ops with autograd from the values
    the segment read (copies: a replayed BatchNorm writes its running statistics
    into them, not into the model's) and the forward's RNG state, and takes
    their vector-Jacobian product."""

    @staticmethod
    def forward(ctx, runner, box, *tensors):
        seg = box["seg"]
        ctx.module, ctx.seg, ctx.runner = box["module"], seg, runner
        ctx.flags = [isinstance(t, torch.Tensor) and t.requires_grad for t in tensors]
        outs = _recorded_outputs(seg, tensors)
        ctx.mark_non_differentiable(*[o for o in outs if not (o.is_floating_point() or o.is_complex())])
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        seg = ctx.seg
        args = [v.detach().clone().requires_grad_(flag) if isinstance(v, torch.Tensor) else v
                for v, flag in zip(seg.input_values, ctx.flags)]
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
        with torch.random.fork_rng(devices=ctx.runner._cuda_devices()), torch.enable_grad():
            torch.set_rng_state(seg.rng)
            if device.type == "cuda" and seg.cuda_rng is not None:  # untested: no GPU here
                torch.cuda.set_rng_state(seg.cuda_rng, device)
            outs = ctx.module(*args)
        pairs = [(o, g if g is not None else torch.zeros_like(o)) for o, g in zip(outs, grads)
                 if isinstance(o, torch.Tensor) and o.requires_grad]
        wanted = [a for a, flag in zip(args, ctx.flags) if flag]
        found = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True)
                     if pairs and wanted else [None] * len(wanted))
        return (None, None) + tuple(next(found) if flag else None for flag in ctx.flags)


class OpSegmentedStep(SegmentedStep):
    """A step split at its value reads (the module docstring); the interface of
    memfit.segments.SegmentedStep: run(inputs) -> (loss, gradients), describe()."""

    def _build(self, inputs: Sequence[Any]) -> None:
        self.reads: List[str] = []  # the value reads of the last step, where the step broke
        self.n_segments = 0
        self.recaptures = 0  # segments captured anew by steps after the first
        self._streak = 0  # steps in a row that captured a segment anew
        self.warned = False
        self.eager_segments = 0  # segments run unplanned (see _count_recaptures)
        # A dry run captures and plans the segments (and refuses what it cannot break),
        # leaving the model, its buffers and the generator as they were.
        with module_state_kept(self.model), torch.random.fork_rng(devices=self._cuda_devices()):
            self.run(inputs)

    def describe(self) -> str:
        n = self.n_segments
        reads = "; ".join(dict.fromkeys(self.reads))
        return f"op-level breaks: {n} segment{'s' if n != 1 else ''}" + (f", at {reads}" if reads else ", no value read")

    def _record(self, inputs: Sequence[Any]):
        leaves, spec = tree_flatten(tuple(inputs))
        detached = [x.detach() if isinstance(x, torch.Tensor) else x for x in leaves]
        sources: Dict[int, Tuple[torch.Tensor, str]] = {}
        for p in self.params:
            sources[id(p)] = (p, "param")
        for x in detached:
            if isinstance(x, torch.Tensor):
                sources[id(x)] = (x, "input")
        for b in self.model.buffers():
            sources[id(b)] = (b, "buffer")
        rec = _Recorder(sources)
        flags = [p.requires_grad for p in self.params]
        xs = list(tree_unflatten(detached, spec))
        try:
            for p in self.params:
                p.requires_grad_(False)
            with torch.enable_grad(), rec.recording():
                loss = self.loss_of(self.model(*xs[:self.k]), xs)
        finally:
            for p, f in zip(self.params, flags):
                p.requires_grad_(f)
        if rec.custom:
            raise Error(f"op-level graph breaks: the step calls the custom autograd.Function "
                        f"'{rec.custom[0]}' (its backward is not the backward of its forward's ops); not supported")
        if not isinstance(loss, torch.Tensor):
            raise Error("op-level graph breaks: the loss is not a tensor")
        vn = rec.lookup(loss)
        if vn not in rec.producer:
            raise Error("op-level graph breaks: the loss is not computed by the step's ops")
        src = rec.segments[rec.producer[vn]]
        if vn not in src.out_values:
            src.outputs.append(vn)
            src.out_values[vn] = loss
        originals = {id(x): orig for x, orig in zip(detached, leaves) if isinstance(x, torch.Tensor)}
        return rec, vn, originals

    def run(self, inputs: Sequence[Any]):
        rec, loss_vn, originals = self._record(inputs)
        self.reads = rec.reads
        self.n_segments = len(rec.segments)
        chain: Dict[int, torch.Tensor] = {}
        for vn, t in rec.by_vn.items():
            chain[vn] = originals.get(id(t), t)  # a parameter, or the caller's input
        held: List[List[torch.Tensor]] = [s.input_values for s in rec.segments]
        readers: List[List[torch.Tensor]] = [[rec.by_vn[v] for v in s.inputs if rec.kind.get(v) == "param"]
                                             for s in rec.segments]
        new_plans = 0
        with torch.enable_grad():
            for k, seg in enumerate(rec.segments):
                ins = [chain.get(vn, seg.input_values[i]) for i, vn in enumerate(seg.inputs)]
                if not seg.outputs:
                    continue
                if not any(isinstance(x, torch.Tensor) and x.requires_grad for x in ins):
                    for vn in seg.outputs:
                        chain[vn] = seg.out_values[vn].detach()
                    continue
                flags = tuple(bool(x.requires_grad) for x in ins)
                key = ("op-segment", tuple(seg.sig), tuple(seg.local[v] for v in seg.inputs),
                       tuple(seg.local[v] for v in seg.outputs), flags)
                if key not in self.plans and self.warned:
                    # Every step makes new segments (_count_recaptures): this one runs its
                    # recorded ops again with autograd, unplanned, instead of a capture and
                    # a plan per step (a detector: 3.4 s a step where eager takes 0.4 s).
                    self.eager_segments += 1
                    module = _TapeSegment(seg.ops, [seg.local[v] for v in seg.inputs],
                                          [seg.local[v] for v in seg.outputs])
                    outs = _EagerTapeFn.apply(self, {"seg": seg, "module": module}, *ins)
                    for vn, o in zip(seg.outputs, outs):
                        chain[vn] = o
                    continue
                if key not in self.plans:
                    new_plans += 1
                    fixed = _bytes(list(self.model.parameters()) + list(self.model.buffers()) +
                                   [t for h in held[:k] for t in h] +
                                   [p for r in readers[k + 1:] for p in r]) + self.optimizer_state_bytes
                    self.plans[key] = self._plan_segment(seg, ins, fixed)
                plan = self.plans[key]
                box = {"seg": seg, "plan": plan, "module": plan.module}
                outs = _TapeFn.apply(self, box, *ins)
                for vn, o in zip(seg.outputs, outs):
                    chain[vn] = o
            loss = chain[loss_vn]
            self._count_recaptures(new_plans)
            wanted = [p for p in self.params if p.requires_grad]
            if loss.requires_grad and wanted:
                grads = iter(torch.autograd.grad(loss, wanted, allow_unused=True))
                out = [with_gradient_hooks(p, next(grads)) if p.requires_grad else None for p in self.params]
            else:
                out = [None] * len(self.params)
        return loss.detach(), out

    def _count_recaptures(self, new_plans: int) -> None:
        """Warns once when 3 steps in a row captured a segment anew: an op after a read
        takes the value as a Python constant (`x / (m + 1.0)`), so every new value is a
        new segment."""
        if not hasattr(self, "_dry_run_done"):
            self._dry_run_done = True
            return
        self.recaptures += new_plans
        self._streak = self._streak + 1 if new_plans else 0
        if self._streak >= 3 and not self.warned:
            self.warned = True
            warnings.warn(f"memfit.fit: op-level graph breaks captured a segment anew on each of the last "
                          f"{self._streak} steps: an op after a value read ({'; '.join(dict.fromkeys(self.reads))}) "
                          f"takes the value as a Python constant, so each new value is a new segment to capture and "
                          f"plan; from now on a segment not planned yet runs its ops eagerly, unplanned (outside "
                          f"the memory limit); keep the value a tensor (x / (m + 1) with m = t.max(), not "
                          f"t.max().item()) to plan it", stacklevel=4)

    def _plan_segment(self, seg: _Seg, ins: List[torch.Tensor], fixed: int):
        local_outputs = [seg.local[v] for v in seg.outputs]
        module = _TapeSegment(seg.ops, [seg.local[v] for v in seg.inputs], local_outputs)
        # A probe replay with autograd: which outputs carry a gradient (inputs copied:
        # the replay may write them in place).
        args = tuple(v.detach().clone().requires_grad_(x.requires_grad) for v, x in zip(seg.input_values, ins))
        with torch.random.fork_rng(devices=self._cuda_devices()):
            torch.set_rng_state(seg.rng)
            with torch.enable_grad():
                out = module(*args)
        call = _Call(0, args, {}, out)
        self._names[id(module)] = f"op segment {len(self.plans)}"
        with torch.random.fork_rng(devices=self._cuda_devices()):
            captured = self._capture(module, call)
        plan = self._plan(captured, fixed, self.limits([(captured[0].graph, fixed)])[0])
        plan.module = module
        self.fixed_bytes[len(self.plans)] = fixed
        return plan


def segmented_step(model: nn.Module, loss_of: Callable, inputs: Sequence[Any], num_model_inputs: int,
                   planner: Callable, limits: Optional[Callable] = None, optimizer_state_bytes: int = 0,
                   fake: Optional[bool] = None) -> SegmentedStep:
    """The step with graph breaks: module-level (memfit.segments) when its segments
    cover every trainable parameter and no module runs eagerly; else broken at the
    value reads themselves (OpSegmentedStep), or module-level where that refuses."""
    args = (model, loss_of, tuple(inputs), num_model_inputs, planner, limits, optimizer_state_bytes, fake)
    module_error: Optional[Error] = None
    try:
        step: Optional[SegmentedStep] = SegmentedStep(*args)
    except Error as e:
        step, module_error = None, e
    if step is not None:
        covered = {id(p) for s in step.segments for p in s.parameters()}
        glue = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
        if not glue and not step.eager:
            return step
    try:
        return OpSegmentedStep(*args)
    except Exception as e:  # noqa: BLE001 - whatever the recording meets: module-level breaks
        if step is None:
            if module_error is None:
                raise
            raise Error(f"module-level breaks: {str(module_error).splitlines()[0]}; op-level breaks: "
                        f"{(str(e).splitlines() or [type(e).__name__])[0]}") from None
        step.reasons["op-level breaks"] = (str(e).splitlines() or [type(e).__name__])[0]
        return step
