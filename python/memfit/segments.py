"""Graph breaks: a training step run as captured segments joined by eager glue.

When a step cannot be one captured graph -- its Python reads a value that
changes every step, the user opts out of specializing on values
(memfit.fit(..., specialize=False)), or the capture fails on an op it cannot
trace -- memfit.fit runs it segmented:

  * the segments are the largest submodules whose forward captures whole
    without reading a tensor's value (the model itself when only the loss
    reads values), found once by trying capture from the top module down;
  * everything else -- the Python of the modules above them, where the value
    reads, `.numpy()`, side effects and data-dependent shapes live, the loss
    function, and leaf modules that do not capture -- is the glue and runs as
    eager PyTorch, every step;
  * each segment call is one torch.autograd.Function. Its forward runs the
    submodule's own forward eagerly (without autograd), saving only its input
    tensors, a copy of its buffers and the generator's state. Its backward
    runs the segment's captured joint graph -- the forward again, then the
    backward, d<outputs, grad_outputs>/d(parameters, inputs) -- under memfit's
    plan for it, with the generator set back to the saved state.

Why this design: it is exact by construction and needs no partitioning of a
segment's forward from its backward. The forward is eager's own code; the
backward's forward is the same ATen ops from the same inputs, buffers and
random state, so every saved value (dropout masks included) is bit-equal to
eager's, and the backward ops are those torch.autograd ran when the segment
was traced. Autograd joins the segments and the glue as it joins any
autograd.Function, so a parameter used by several segments gets its gradients
summed as eager sums them. The cost is one more forward of each segment (as
activation checkpointing pays); the gain is that a segment holds only its
inputs between the forward and the backward, which is what makes the memory
crossing segments small and easy to account.

The optimizer update runs as torch.optim's own step() on the gradients (the
parameters' .grad is set for it and put back afterwards), so it is eager's.

How the planner sees a segmented step: each segment's joint graph is planned
alone by memfit.optimize. While segment call k's backward runs, memory held
outside its graph is fixed: the parameters and buffers of the rest of the
model, the optimizer's state, what the eager glue saved for backward
(measured once with saved_tensors_hooks), the inputs and buffer copies that
the segment calls before k hold, and the gradients of the parameters of the
calls after k (their backward ran already). fixed_bytes[k] is that sum (each
storage once; an upper bound, glue memory freed early is still counted). With
mem_limit (bytes) a segment is planned under mem_limit - fixed_bytes[k]; with
mem_limit_ratio r under r * max_k(fixed_bytes[k] + peak_k) - fixed_bytes[k],
peak_k being the segment graph's simulated program-order peak; with
lat_limit_ratio each segment gets that ratio. A segment module called several
times is planned once, for its largest fixed bytes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .graph import Error
from .torch_compat import backward_grads


def _storage_key(t: torch.Tensor) -> Tuple[int, int]:
    try:
        s = t.storage()
        return (s.data_ptr(), s.nbytes())
    except Exception:  # noqa: BLE001 - sparse / odd tensors: counted by their own bytes
        return (id(t), t.numel() * t.element_size())


def _bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        k = _storage_key(t)
        seen[k] = k[1]
    return sum(seen.values())


@dataclass
class _Call:
    """One call of a module in the profiling forward."""

    order: int  # position among all module calls (pre-order)
    args: tuple
    kwargs: dict
    out: Any = None
    mutated_input: bool = False  # the forward wrote one of its input tensors in place
    stack: Tuple[int, ...] = ()  # ids of the modules being called around it (outermost first)


def _signature(args: tuple, kwargs: dict) -> Tuple:
    leaves, spec = tree_flatten((args, kwargs))
    sig = []
    for x in leaves:
        if isinstance(x, torch.Tensor):
            sig.append(("T", tuple(x.shape), x.dtype, x.device, x.requires_grad))
        else:
            sig.append(("C", type(x).__name__, repr(x)))
    return (str(spec), tuple(sig))


class _Joint(nn.Module):
    """A segment's forward and backward as one module for memfit.capture: the
    segment's tensor inputs that need a gradient are its parameters "x<i>",
    the other tensor inputs and then the gradients of the differentiable
    outputs are its inputs; loss = sum((out * grad_out).sum()), whose gradient
    reaches each output as grad_out exactly (1.0 * g)."""

    def __init__(self, seg: nn.Module, args: tuple, kwargs: dict, n_diff: int):
        super().__init__()
        self.seg = seg
        leaves, self.spec = tree_flatten((args, kwargs))
        self.kinds = []  # per leaf: ("x", i) a parameter, ("in", j) an input, ("c", value) a constant
        n_in = 0
        for i, v in enumerate(leaves):
            if isinstance(v, torch.Tensor) and v.requires_grad:
                self.register_parameter(f"x{i}", nn.Parameter(v.detach().clone()))
                self.kinds.append(("x", i))
            elif isinstance(v, torch.Tensor):
                self.kinds.append(("in", n_in))
                n_in += 1
            else:
                self.kinds.append(("c", v))
        self.n_in = n_in
        self.n_diff = n_diff

    def forward(self, *flat):
        leaves = []
        for kind, v in self.kinds:
            leaves.append(getattr(self, f"x{v}") if kind == "x" else flat[v] if kind == "in" else v)
        args, kwargs = tree_unflatten(leaves, self.spec)
        # The module's forward without its hooks: they run in the glue, around the segment call.
        return type(self.seg).forward(self.seg, *args, **kwargs)

    def loss(self, out, *flat):
        grads = flat[self.n_in:]
        diff = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor) and o.requires_grad]
        return sum((o * g).sum() for o, g in zip(diff, grads))


@dataclass
class _Plan:
    """A segment module's joint graph for one call signature, compiled."""

    compiled: Any
    names: List[str]  # source names, in compiled.sources order
    constants: Dict[str, torch.Tensor]
    out_names: List[str]
    diff: List[bool]  # per tensor output: whether it carries a gradient
    out_meta: List[Tuple[Tuple[int, ...], torch.dtype]]  # per tensor output: shape, dtype
    leaf_is_param: Dict[int, bool]  # input leaf index -> whether it is the joint graph's parameter "x<i>"
    fixed_bytes: int = 0
    figures: Dict[str, Any] = field(default_factory=dict)
    plan: Any = None  # memfit.plan.Plan


class _SegmentFn(torch.autograd.Function):
    """One segment call: forward eager without autograd, backward the planned joint graph."""

    @staticmethod
    def forward(ctx, runner, call, *tensors):
        return runner._forward(ctx, call, tensors)

    @staticmethod
    def backward(ctx, *grads):
        return (None, None) + tuple(ctx.runner._backward(ctx, grads))


class SegmentedStep:
    """One input signature's segmented step (see the module docstring).

    step = SegmentedStep(model, loss_of, inputs, num_model_inputs, planner)
    loss, grads = step.run(inputs)    # grads: one per parameter (None when unused)

    limits([(graph, fixed_bytes), ...]) -> [mem_limit bytes or None, ...]: what each
    segment graph may use (memfit.fit's limits less the bytes crossing it);
    planner(graph, mem_limit) -> (plan, figures): planning one segment graph.
    """

    def __init__(self, model: nn.Module, loss_of: Callable, inputs: Sequence[Any], num_model_inputs: int,
                 planner: Callable, limits: Optional[Callable] = None, optimizer_state_bytes: int = 0,
                 fake: Optional[bool] = None):
        self.model = model
        self.loss_of = loss_of
        self.k = num_model_inputs
        self.planner = planner
        self.limits = limits or (lambda pairs: [None] * len(pairs))
        self.fake = fake
        self.params = [p for p in model.parameters()]
        self.optimizer_state_bytes = optimizer_state_bytes
        self.plans: Dict[Tuple[int, Tuple], _Plan] = {}
        self.segments: List[nn.Module] = []  # the segment modules, in first-call order
        self.eager: List[str] = []  # modules that run eagerly (a break inside, no child to capture)
        self.reasons: Dict[str, str] = {}  # module name -> why it is not a segment
        self.fixed_bytes: Dict[int, int] = {}  # id(segment) -> the largest fixed bytes of its calls
        self._names = {id(m): (n or type(m).__name__) for n, m in model.named_modules()}
        self._build(inputs)

    def _build(self, inputs: Sequence[Any]) -> None:
        # Capturing runs the segments (and seeds the generator): draw nothing the step would.
        with torch.random.fork_rng(devices=self._cuda_devices()):
            self._setup(inputs)

    def _cuda_devices(self) -> List[torch.device]:
        return sorted({p.device.index or 0 for p in self.params if p.device.type == "cuda"})

    # ---- finding the segments -----------------------------------------------------------

    @contextlib.contextmanager
    def _overridden(self, modules: Sequence[nn.Module], wrapper: Callable):
        for m in modules:
            m.forward = wrapper(m)
        try:
            yield
        finally:
            for m in modules:
                if "forward" in m.__dict__:
                    del m.__dict__["forward"]

    def _profile(self, inputs: Sequence[Any]):
        """Runs one eager forward and loss with autograd on, recording every module
        call (args, outputs, the module stack) and every tensor autograd saves with
        the module stack it was saved under. The model, its buffers and the
        generator are put back afterwards."""
        calls: Dict[int, List[_Call]] = {}
        stack: List[int] = []
        saved: List[Tuple[Tuple[int, ...], torch.Tensor]] = []
        counter = [0]
        modules = list(dict.fromkeys(self.model.modules()))

        def wrapper(m):
            def call(*args, **kwargs):
                c = _Call(counter[0], args, kwargs, stack=tuple(stack))
                counter[0] += 1
                tensors = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
                versions = [x._version for x in tensors]
                stack.append(id(m))
                try:
                    c.out = type(m).forward(m, *args, **kwargs)
                finally:
                    stack.pop()
                c.mutated_input = any(x._version != v for x, v in zip(tensors, versions))
                calls.setdefault(id(m), []).append(c)
                return c.out
            return call

        def pack(t):
            saved.append((tuple(stack), t))
            return t

        from .side_effects import module_state_kept

        rng = torch.get_rng_state()
        try:
            # The profiling forward's side effects are put back.
            with module_state_kept(self.model), self._overridden(modules, wrapper), torch.enable_grad(), \
                    torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = self.model(*inputs[:self.k])
                self.loss_of(out, inputs)
        finally:
            torch.set_rng_state(rng)
        return calls, saved

    def _try_segment(self, m: nn.Module, calls: List[_Call]) -> Optional[str]:
        """None when every call of m captures whole without reading a value (the captures
        are kept in self._captured), else why not."""
        if any(c.mutated_input for c in calls):
            return "writes an input in place"
        if m._forward_pre_hooks:
            # They run in the glue, around the segment call: one that computes what the
            # forward reads from parameters (weight_norm, spectral_norm) would hand the
            # segment a constant, and its parameters would get no gradient.
            return "has forward pre-hooks"
        own = [p for p in m.parameters()]
        for c in calls:
            leaves = [x for x in tree_flatten((c.args, c.kwargs))[0] if isinstance(x, torch.Tensor)]
            outs = [o for o in tree_flatten(c.out)[0] if isinstance(o, torch.Tensor)]
            if not outs:
                return "returns no tensor"
            if not own and not any(x.requires_grad for x in leaves):
                return "needs no gradient"
            if not any(o.requires_grad for o in outs):
                # Its results carry no gradient (made under no_grad, detached, or
                # integer): the joint graph's loss would be the integer 0.
                return "returns nothing that carries a gradient"
        for c in calls:
            key = (id(m), _signature(c.args, c.kwargs))
            if key in self._captured:
                continue
            try:
                self._captured[key] = self._capture(m, c)
            except Error as e:
                return str(e).splitlines()[0]
            if self._captured[key][0].value_guards:
                g = self._captured[key][0].value_guards[0]
                return f"reads a value ({g.what})"
        return None

    def _capture(self, m: nn.Module, c: _Call):
        from .capture import capture

        outs = [o for o in tree_flatten(c.out)[0] if isinstance(o, torch.Tensor)]
        diff = [o for o in outs if o.requires_grad]
        joint = _Joint(m, c.args, c.kwargs, len(diff))
        flat = [x.detach() for k, x in zip(joint.kinds, tree_flatten((c.args, c.kwargs))[0]) if k[0] == "in"]
        flat += [torch.ones_like(o) for o in diff]
        name = f"segment {self._names.get(id(m), type(m).__name__)}"
        cap = None
        if self.fake is not False:
            try:
                cap = capture(joint, tuple(flat), loss_fn=joint.loss, name=name, fake=True, parameter_hooks=False)
            except Error:
                if self.fake:
                    raise
                # No meta kernel, a value read, a data-dependent shape or a fake-mode limit of
                # torch: trace for real (the value reads then show as guards).
        if cap is None:
            cap = capture(joint, tuple(flat), loss_fn=joint.loss, name=name, fake=False, parameter_hooks=False)
        return cap, joint, [o.requires_grad for o in outs], [(tuple(o.shape), o.dtype) for o in outs]

    def _setup(self, inputs: Sequence[Any]) -> None:
        calls, saved = self._profile(inputs)
        self._captured: Dict[Tuple, Any] = {}
        segments: List[nn.Module] = []
        pending = [self.model]
        while pending:
            m = pending.pop(0)
            mc = calls.get(id(m))
            if not mc:
                continue
            why = self._try_segment(m, mc)
            if why is None:
                segments.append(m)
                continue
            self.reasons[self._names[id(m)]] = why
            children = [c for c in m.children() if calls.get(id(c))]
            if children:
                pending.extend(children)
            else:
                self.eager.append(self._names[id(m)])
        # Segments in the order of their first call; a module inside another segment is not one.
        segments.sort(key=lambda s: calls[id(s)][0].order)
        self.segments = segments
        seg_ids = {id(s) for s in segments}
        # The bytes crossing each segment call's backward (module docstring).
        seg_calls = sorted(((c.order, s) for s in segments for c in calls[id(s)]), key=lambda x: x[0])
        inputs_of = {}
        for order, s in seg_calls:
            c = next(c for c in calls[id(s)] if c.order == order)
            inputs_of[order] = [x for x in tree_flatten((c.args, c.kwargs))[0] if isinstance(x, torch.Tensor)] + \
                list(s.buffers())
        glue = [t for st, t in saved if not any(i in seg_ids for i in st)]
        everything = list(self.model.parameters()) + list(self.model.buffers())
        for pos, (order, s) in enumerate(seg_calls):
            own = set(id(t) for t in list(s.parameters()) + list(s.buffers()))
            resident = [t for t in everything if id(t) not in own]
            before = [t for o, _ in seg_calls[:pos] for t in inputs_of[o]]
            later_grads = {id(p): p for _, s2 in seg_calls[pos + 1:] for p in s2.parameters() if id(p) not in own}
            fixed = _bytes(resident + glue + before + list(later_grads.values())) + self.optimizer_state_bytes
            self.fixed_bytes[id(s)] = max(self.fixed_bytes.get(id(s), 0), fixed)
        todo = [(key, captured) for key, captured in self._captured.items() if key[0] in seg_ids]
        budgets = self.limits([(captured[0].graph, self.fixed_bytes[key[0]]) for key, captured in todo])
        for (key, captured), budget in zip(todo, budgets):
            self.plans[key] = self._plan(captured, self.fixed_bytes[key[0]], budget)
        self._captured = {}

    def _plan(self, captured, fixed_bytes: int, budget: Optional[int]) -> _Plan:
        from .codegen import compile_plan

        cap, joint, diff, out_meta = captured
        g = cap.graph
        plan, figures = self.planner(g, budget)
        device = next((p.device for p in self.params), torch.device("cpu"))
        compiled = compile_plan(plan, device=device)
        # Tensor ids are the planned graph's (optimize may rewrite the step: dropout masks drawn
        # out of place); names are kept.
        planned = compiled.graph
        names = [planned.tensors[t].name for t in compiled.sources]
        constants = {n: v for n, v in cap.inputs.items()
                     if g.tensor_by_name(n).role not in ("parameter", "buffer", "input")}
        out_names = [planned.tensors[t].name for t in compiled.outputs]
        leaf_is_param = {v: True for kind, v in joint.kinds if kind == "x"}
        return _Plan(compiled, names, constants, out_names, diff, out_meta, leaf_is_param, fixed_bytes, figures,
                     plan)

    # ---- running ---------------------------------------------------------------------------

    def describe(self) -> str:
        segs = ", ".join(self._names[id(s)] for s in self.segments) or "none"
        eager = ", ".join(self.eager) or "none"
        return f"segments: {segs}; eager: {eager}"

    def run(self, inputs: Sequence[Any]):
        """(loss, gradients of every parameter) of one step, the segments through their plans."""
        def wrapper(m):
            def call(*args, **kwargs):
                key = (id(m), _signature(args, kwargs))
                if key not in self.plans:
                    self.plans[key] = self._new_signature(m, args, kwargs)
                leaves, spec = tree_flatten((args, kwargs))
                tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
                box = {"module": m, "key": key, "leaves": leaves, "spec": spec}
                flat = _SegmentFn.apply(self, box, *tensors, *m.parameters())
                it = iter(flat)
                out = [next(it) if t else v for v, t in box["out_leaves"]]
                return tree_unflatten(out, box["out_spec"])
            return call

        with self._overridden(self.segments, wrapper), torch.enable_grad():
            out = self.model(*inputs[:self.k])
            loss = self.loss_of(out, inputs)
            grads = backward_grads(loss, self.params)
        return loss.detach(), grads

    def _new_signature(self, m: nn.Module, args, kwargs) -> _Plan:
        """A segment called with arguments of a shape (or constants) not seen before:
        captured and planned now (it was guard-free; it must stay so)."""
        from .side_effects import module_state_kept

        with module_state_kept(m), torch.enable_grad(), torch.random.fork_rng(devices=self._cuda_devices()):
            c = _Call(0, args, kwargs, type(m).forward(m, *args, **kwargs))
        override = m.__dict__.pop("forward", None)  # capture the module's own forward, not the segment call
        try:
            with torch.random.fork_rng(devices=self._cuda_devices()):
                captured = self._capture(m, c)
        finally:
            if override is not None:
                m.forward = override
        if captured[0].value_guards:
            raise Error(f"segment {self._names.get(id(m))}: reads a value on a new input signature "
                        f"({captured[0].value_guards[0].what})")
        fixed = self.fixed_bytes.get(id(m), 0)
        return self._plan(captured, fixed, self.limits([(captured[0].graph, fixed)])[0])

    def _forward(self, ctx, box, tensors):
        m, key = box["module"], box["key"]
        n_args = len(tensors) - len(list(m.parameters()))
        args_tensors = tensors[:n_args]
        it = iter(args_tensors)
        leaves = [next(it) if isinstance(v, torch.Tensor) else v for v in box["leaves"]]
        args, kwargs = tree_unflatten(leaves, box["spec"])
        ctx.runner, ctx.module, ctx.plan, ctx.n_args = self, m, self.plans[key], n_args
        ctx.leaf_is_tensor = [isinstance(v, torch.Tensor) for v in box["leaves"]]
        ctx.device = next((t.device for t in tensors), torch.device("cpu"))
        ctx.rng = torch.get_rng_state()
        ctx.cuda_rng = torch.cuda.get_rng_state(ctx.device) if ctx.device.type == "cuda" else None
        ctx.buffers = {n: b.detach().clone() for n, b in m.named_buffers()}
        ctx.save_for_backward(*args_tensors)
        out = type(m).forward(m, *args, **kwargs)
        out_leaves, box["out_spec"] = tree_flatten(out)
        box["out_leaves"] = [(v, isinstance(v, torch.Tensor)) for v in out_leaves]
        outs = [v for v in out_leaves if isinstance(v, torch.Tensor)]
        diff = ctx.plan.diff
        if len(diff) != len(outs):
            raise Error(f"segment {self._names.get(id(m))}: returned {len(outs)} tensors, {len(diff)} when captured")
        ctx.mark_non_differentiable(*[o for o, d in zip(outs, diff) if not d])
        # An output that is an input tensor itself: autograd needs a new tensor object.
        ids = {id(t) for t in tensors}
        return tuple(o.view_as(o) if id(o) in ids else o for o in outs)

    def _backward(self, ctx, grads, saved=None):
        plan: _Plan = ctx.plan
        m = ctx.module
        saved = list(ctx.saved_tensors if saved is None else saved)
        values: Dict[str, Any] = dict(plan.constants)
        tensor_pos = [i for i, t in enumerate(ctx.leaf_is_tensor) if t]
        nongrad = []
        for pos, leaf in enumerate(tensor_pos):
            x = saved[pos]
            if plan.leaf_is_param.get(leaf):
                values[f"x{leaf}"] = x.detach()
            else:
                nongrad.append(x.detach())
        diff_grads = []
        for g, d, o in zip(grads, plan.diff, plan.out_meta):
            if d:
                diff_grads.append(g if g is not None else torch.zeros(o[0], dtype=o[1], device=ctx.device))
        flat = nongrad + diff_grads
        in_names = ["input"] if len(flat) == 1 else [f"input{j}" for j in range(len(flat))]
        values.update(zip(in_names, flat))
        for n, p in m.named_parameters():
            values[f"seg.{n}"] = p.detach()
        for n, b in ctx.buffers.items():
            values[f"seg.{n}"] = b
        S = []
        for n in plan.names:
            if n not in values:
                raise Error(f"segment {self._names.get(id(m))}: no value for the graph's source '{n}'")
            S.append(values[n])
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(ctx.rng)
            if ctx.cuda_rng is not None:
                torch.cuda.set_rng_state(ctx.cuda_rng, ctx.device)
            results = dict(zip(plan.out_names, plan.compiled(S, ())))
        out = []
        for pos, leaf in enumerate(tensor_pos):
            out.append(results.get(f"x{leaf}.grad") if plan.leaf_is_param.get(leaf) else None)
        for n, _ in m.named_parameters():
            out.append(results.get(f"seg.{n}.grad"))
        return out
