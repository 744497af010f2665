"""memfit.fit: train a PyTorch model with memfit's plan, changing two lines.

    step = memfit.fit(model, optimizer, F.cross_entropy, (x, y), mem_limit_ratio=0.6)
    for x, y in loader:
        loss = step(x, y)          # forward, backward and optimizer.step(), under the limit

What happens on the first call with a new input signature (shapes, dtypes,
devices, requires_grad of the inputs; the parameters' dtypes, devices and
requires_grad; the modules' train/eval flags; the optimizer's structure):

  1. capture: one training step (forward, loss, gradients, the optimizer's
     update) traced with fake tensors -- no step runs, the model and optimizer
     are not touched (memfit.capture);
  2. plan: memfit.optimize under the limit (the native module), or program
     order when no limit is given, or the plan given as plan=;
  3. compile: the plan becomes one generated Python function (memfit.codegen).
Later calls with the same signature only run that function: on the model's
own parameters and buffers, updated in place, and on the optimizer's own
state (optimizer.state[p]["momentum_buffer"], Adam's "exp_avg", "exp_avg_sq"
and "step", created as torch.optim creates them), so model.state_dict(),
checkpoints, optimizer.state_dict() and lr schedulers keep working: the
learning rate and the other hyper-parameters are read from
optimizer.param_groups at every call, Adam's bias corrections from each
parameter's step count. Random ops draw from torch's global generator in
eager's order, so with the same seed the losses, parameters and states equal
eager training's (torch.optim.SGD / Adam with foreach=False, torch's default
on torch 1.13). The parameters' .grad is not set (the gradients are consumed
by the update inside the step); those of trainable parameters the optimizer
does not hold are added into .grad, as loss.backward() adds them. Any other
torch.optim.Optimizer (and Adam with amsgrad, capturable or fused) runs its
own step() after the planned forward and backward, on the plan's gradients,
its state held beside the plan (docs/python.md). With optimizer=None the
step computes the gradients and accumulates them into .grad, as
loss.backward() does.

A step that reads tensor values in Python is specialized on them and its
guards are checked every step, or run with graph breaks (fit's specialize;
docs/python.md, "Graph breaks").

Inputs: the model gets the first num_model_inputs inputs, loss_fn(output,
*rest) the others; by default, with a loss_fn and two or more inputs, all but
the last (the usual (x, y)); without a loss_fn the loss is the output (or its
sum when it is not a scalar). An input may be a tensor, a list / tuple / dict
of them (a detection model's images and targets), or a value that is not a
tensor (a flag, a scale): the plan holds such a value as a constant, and
another value re-plans (or, changing every step, runs with graph breaks).
"""

from __future__ import annotations

import collections
import copy
import inspect
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .capture import (capture, check_capturable, default_loss, input_constants, input_names, input_structure,
                      input_tensors)
from .codegen import CompiledPlan, compile_plan
from .executor import DTYPE_NAMES
from .graph import Error, NoPlanFits
from .side_effects import PythonStateChanged, StepNotAGraph
from .guards import CaptureCache, GuardCheck
from .optim_update import (DEFAULTS, KINDS, SCALAR_NAMES, STEP_SCALARS, ParamUpdate, clip_gradients,
                           update_scalars)
from .plan import Plan, load_plan, program_order_plan
from .torch_compat import gradient_hook_ids

# Placeholder values traced for the optimizer's numbers: exact binary
# fractions far below any real hyper-parameter (2^-700 ~ 1e-211), so that the
# generated code can find them in the op attributes and read the real value
# of each step instead (they survive the JSON round trip through the C++
# optimizer exactly).
_SENTINEL_UNIT = 2.0 ** -700

# Steps in a row whose value guards miss (each re-captures and re-plans) before
# memfit.fit says so and runs the step with graph breaks instead.
REPLAN_WARN_AFTER = 3
# Plans kept per input signature (one per set of values the guards saw).
REPLAN_CACHE = 8


def _hyper(kind: str, group: Dict[str, Any]) -> Dict[str, Any]:
    return {k: group.get(k, d) for k, d in DEFAULTS[kind].items()}


def _check_optimizer(optimizer) -> None:
    """Refuses an optimizer fit cannot step once per planned forward and backward."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise Error(f"memfit.fit: optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    closure = inspect.signature(type(optimizer).step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise Error(f"memfit.fit: optimizer {type(optimizer).__name__} is not supported: its step needs a closure "
                    f"(it evaluates the loss again within a step); fit runs one forward and backward per step")
    if isinstance(optimizer, torch.optim.SparseAdam):
        raise Error("memfit.fit: optimizer SparseAdam is not supported: it takes sparse gradients, and the "
                    "planned step makes dense ones")


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The bytes of the tensors in `optimizer`'s state for its parameters. An optimizer
    that has not stepped yet creates its state in its first step: then what that step
    creates, found by stepping a copy of it on meta tensors of its parameters' shapes
    (no memory, no change to the optimizer); where the copy cannot step on meta
    tensors, twice the parameters' bytes (Adam's two moments, the most of torch's
    single-moment and two-moment optimizers but Adam with amsgrad)."""
    groups = optimizer.param_groups
    params = [p for g in groups for p in g["params"]]

    def tensor_bytes(state) -> int:
        return sum(v.numel() * v.element_size() for st in state for v in st.values() if isinstance(v, torch.Tensor))

    if any(p in optimizer.state for p in params):
        return tensor_bytes(optimizer.state[p] for p in params if p in optimizer.state)
    probe = copy.copy(optimizer)
    metas = []
    probe.param_groups = []
    for g in groups:
        ps = []
        for p in g["params"]:
            m = torch.empty_like(p, device="meta")
            if p.requires_grad:
                m.grad = torch.empty_like(m)
            ps.append(m)
        metas += ps
        probe.param_groups.append(dict(g, params=ps))
    probe.state = collections.defaultdict(dict)
    try:
        # The class's step, not the instance's: an lr scheduler wraps the instance's.
        type(optimizer).step(probe)
        return tensor_bytes(probe.state[m] for m in metas if m in probe.state)
    except Exception:  # an optimizer that reads its tensors' values (meta tensors have none)
        return 2 * sum(p.numel() * p.element_size() for p in params if p.requires_grad)


def _structure(kind: str, group: Dict[str, Any]) -> Tuple:
    """What of a param group decides which ops the update has (a change re-plans)."""
    if kind == "sgd":
        return (group["momentum"] != 0, group["weight_decay"] != 0, bool(group["nesterov"]), bool(group["maximize"]),
                len(group["params"]))
    return (group["weight_decay"] != 0, bool(group["maximize"]), bool(group.get("amsgrad")),
            bool(group.get("capturable")), bool(group.get("fused")), len(group["params"]))


def _held(optimizer) -> set:
    """The ids of the parameters `optimizer` updates (none without one)."""
    return set() if optimizer is None else {id(p) for group in optimizer.param_groups for p in group["params"]}


def _accumulate(pairs) -> None:
    """Adds each (parameter, gradient) into the parameter's .grad, as loss.backward() does: the
    gradients of a step without an optimizer, and of trainable parameters its optimizer does not
    hold (a GAN's discriminator in the generator's step)."""
    for p, g in pairs:
        if g is None:
            continue
        if p.grad is None:
            p.grad = g
        else:
            p.grad += g


@dataclass
class _Entry:
    """One signature's compiled step and how to feed it."""

    compiled: CompiledPlan
    plan: Plan
    template: List[Any]  # the sources: params, buffers and constants fixed; inputs and states filled per call
    input_slots: List[Tuple[int, int]]  # (position in template, index among the inputs' tensors)
    state_slots: List[Tuple[int, torch.Tensor, str]]  # (position, parameter, state key)
    scalars: List[float]  # P, filled per call
    group_slots: List[Tuple[int, int, str]]  # (slot, group index, scalar name): per group
    param_slots: List[Tuple[int, int, torch.Tensor, str]]  # (slot, group index, parameter, scalar name)
    states_to_create: List[Tuple[torch.Tensor, str]]  # (parameter, key) the optimizer may still lack
    figures: Dict[str, Any] = field(default_factory=dict)  # the optimizer's (or {} for program order)
    # The capture (memfit.Captured) when it has value guards or constant inputs, or a callable(*inputs) -> bool.
    guards: Any = None
    graph: Any = None
    # torch.optim's own step (eager_update): (output index, parameter) of every gradient
    grads: List[Tuple[int, torch.Tensor]] = field(default_factory=list)
    # Those accumulated into .grad, as loss.backward() does: every one without an optimizer;
    # with one, those of trainable parameters it does not hold (a GAN's discriminator in the
    # generator's step)
    accumulated: List[Tuple[int, torch.Tensor]] = field(default_factory=list)
    eager_update: bool = False  # torch.optim's step runs after the plan's, on its gradients

    def check_guards(self, inputs: Sequence[Any], state=None) -> GuardCheck:
        """Whether this plan is the step for `inputs` (memfit.guards.CaptureCache asks):
        the capture's value guards evaluated on them and the model's current
        parameters and buffers (input shapes are the signature's, already equal)."""
        g = self.guards
        if g is None:
            return GuardCheck(True)
        if hasattr(g, "check_guards"):
            return g.check_guards(inputs, state)
        return GuardCheck(bool(g(*inputs)), "the value guards failed")


@dataclass
class _SegmentedEntry:
    """One signature's step run segmented at graph breaks (memfit.segments)."""

    step: Any  # memfit.segments.SegmentedStep
    why: str  # why the step is segmented
    figures: Dict[str, Any] = field(default_factory=dict)
    plan: Any = None
    guards: Any = None
    # The whole step is captured again after this entry's first run (FitStep._capture_again).
    capture_again: bool = False

    def check_guards(self, inputs: Sequence[Any], state=None) -> GuardCheck:
        return GuardCheck(True)  # the glue reads every value again at each step


class FitStep:
    """The callable memfit.fit returns: step(*inputs) -> loss (a detached tensor)."""

    def __init__(self, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], loss_fn: Optional[Callable],
                 *, mem_limit=None, mem_limit_ratio=None, lat_limit_ratio=None, device: Optional[str] = None,
                 num_model_inputs: Optional[int] = None, plan=None, fake: Optional[bool] = None,
                 specialize: bool = True, retain_cpu_memory: bool = True, max_grad_norm: Optional[float] = None,
                 **optimize_options):
        if not isinstance(model, torch.nn.Module):
            raise Error(f"memfit.fit: model must be a torch.nn.Module, got {type(model).__name__}")
        check_capturable(model, "memfit.fit")
        limits = [x for x in (mem_limit, mem_limit_ratio, lat_limit_ratio) if x is not None]
        if len(limits) > 1:
            raise Error("memfit.fit: give at most one of mem_limit, mem_limit_ratio, lat_limit_ratio")
        if plan is not None and limits:
            raise Error("memfit.fit: plan= is a plan made already; drop mem_limit / mem_limit_ratio / lat_limit_ratio")
        if optimizer is not None:
            _check_optimizer(optimizer)
        if max_grad_norm is not None:
            if optimizer is None:
                raise Error("memfit.fit: max_grad_norm clips the gradients the optimizer steps on; without an "
                            "optimizer the step accumulates .grad: clip it yourself before optimizer.step()")
            if not (isinstance(max_grad_norm, (int, float)) and max_grad_norm > 0):
                raise Error(f"memfit.fit: max_grad_norm = {max_grad_norm!r} must be a positive number")
        allowed = {"costs", "time_budget", "work_budget", "deterministic", "method", "swap", "recompute", "reorder",
                   "recompute_random", "fission"}
        unknown = sorted(set(optimize_options) - allowed)
        if unknown:
            raise Error(f"memfit.fit: unknown option(s) {', '.join(unknown)} (optimize options: "
                        f"{', '.join(sorted(allowed))})")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.kind = KINDS.get(type(optimizer)) if optimizer is not None else None
        self.limit = {"mem_limit": mem_limit, "mem_limit_ratio": mem_limit_ratio, "lat_limit_ratio": lat_limit_ratio}
        self.device_profile = device
        self.num_model_inputs = num_model_inputs
        self.plan_given = plan
        self.fake = fake
        self.optimize_options = optimize_options
        self.modules = list(model.modules())
        self.params = dict(model.named_parameters())
        self.buffers = dict(model.named_buffers())
        self.specialize = specialize
        self.max_grad_norm = max_grad_norm
        # By signature: the plans made for it, each valid while its value guards hold.
        self.plans: Dict[Tuple, CaptureCache] = {}
        self.last: Optional[_Entry] = None
        self.captures = 0  # how many times a step was captured and planned
        self.replan_warning: Optional[str] = None  # said once (warnings.warn) when steps re-plan in a row
        # Whether memfit.retain_cpu_memory() was applied for this step (fit's retain_cpu_memory).
        self.retained_cpu_memory = retain_cpu_memory and self._run_device().type == "cpu" and _retain_cpu_memory()

    # ---- the optimizer -----------------------------------------------------------------------

    def _update_in_graph(self) -> bool:
        """Whether the step's graph holds the optimizer's update (memfit's own code of
        torch's SGD, Adam and AdamW, optim_update.py). Otherwise torch.optim's own step
        runs after the planned forward and backward, on the gradients the plan returns:
        any other torch.optim.Optimizer, and Adam / AdamW with amsgrad, capturable or
        fused."""
        opt = self.optimizer
        if opt is None or self.kind is None:
            return False
        return self.kind == "sgd" or not any(g.get("amsgrad") or g.get("capturable") or g.get("fused")
                                             for g in opt.param_groups)

    def _optimizer_state_bytes(self) -> int:
        """The bytes of the optimizer's state: its tensors, or, before its first step
        creates them, what that step would create (optimizer_state_bytes)."""
        return 0 if self.optimizer is None else optimizer_state_bytes(self.optimizer)

    def _state_beside(self) -> Optional[int]:
        """The bytes of state held beside the plan when torch.optim's own step runs the
        update (_optimizer_state_bytes, counted once per plan); None when the plan
        holds the update, or there is no optimizer."""
        if self.optimizer is None or self._update_in_graph():
            return None
        return self._optimizer_state_bytes()

    def _update_figures(self, figures: Dict[str, Any], beside: Optional[int]) -> Dict[str, Any]:
        """figures, saying where the update runs when torch.optim runs it (beside: _state_beside)."""
        if beside is not None:
            figures = dict(figures, optimizer_update=f"torch.optim.{type(self.optimizer).__name__}.step after the "
                                                      f"plan", optimizer_state_bytes=beside)
        return figures

    # ---- signature -----------------------------------------------------------------------

    def _signature(self, inputs: Sequence[Any]) -> Tuple:
        # Nested inputs (a detection model's list of images and list of target dicts)
        # by their structure and tensors. A value that is not a tensor (a flag, a
        # scale) is a constant of the captured graph: the capture's guards compare it.
        structure, tensors = input_structure(inputs)
        xs: List[Any] = [(tuple(x.shape), x.dtype, x.device, x.requires_grad) for x in tensors]
        xs.append(structure)
        # A hook put on a parameter (p.register_hook) is part of the step's backward.
        ps = tuple((p.dtype, p.device, p.requires_grad, p.shape, gradient_hook_ids(p))
                   for p in self.params.values())
        training = tuple(m.training for m in self.modules)
        opt: Tuple = ()
        if self._update_in_graph():
            opt = tuple(_structure(self.kind, g) for g in self.optimizer.param_groups)
        elif self.optimizer is not None:
            opt = ("torch.optim",)  # its own step runs after the plan's: no structure of it in the graph
        return (tuple(xs), ps, training, opt)

    # ---- one call ----------------------------------------------------------------------

    def _entry(self, inputs: Sequence[Any]):
        key = self._signature(inputs)
        cache = self.plans.get(key)
        if cache is None:
            cache = self.plans[key] = CaptureCache(self._prepare, max_entries=REPLAN_CACHE,
                                                   warn_after=REPLAN_WARN_AFTER)
        entry = cache.get(inputs)
        message = cache.thrashing
        if message is not None and not isinstance(entry, _SegmentedEntry):
            # Said once; with breaks possible, this signature stops re-planning: its step
            # runs segmented, the values read in the glue, every step.
            fallback = self.plan_given is None
            if self.replan_warning is None:
                self.replan_warning = f"memfit.fit: {message}" + (
                    "; running the step with graph breaks at the values read from now on" if fallback else "")
                warnings.warn(self.replan_warning, stacklevel=3)
            if fallback:
                entry = self._segmented(inputs, f"re-planned {cache.warn_after} steps in a row ({cache.reasons[-1]})")
                cache.entries = [entry]
        return entry

    def __call__(self, *inputs: Any) -> torch.Tensor:
        key = self._signature(inputs)
        entry = self._entry(inputs)
        self.last = entry
        if isinstance(entry, _SegmentedEntry):
            loss = self._run_segmented(entry, inputs)
            if entry.capture_again:
                self._capture_again(key, entry, inputs)
            return loss
        return self._run(entry, inputs)

    def _capture_again(self, key, entry: _SegmentedEntry, inputs: Sequence[Any]) -> None:
        """A step segmented because its forward set a Python attribute may set it
        at its first call only (a cache built then: rotary embeddings' cos / sin
        tables). Once the step has run, it is captured again, once: where the
        forward leaves its state as it is now, the whole step is one graph from
        the next step on (the cache, read only, a constant of it). Not where the
        step reads values: torchvision's MultiScaleRoIAlign sets its scales at
        its first call, and a detector's values change at every step."""
        entry.capture_again = False
        try:
            whole = self._prepare(inputs, again=True)
        except Error:
            return
        cache = self.plans[key]
        cache.entries = [whole if e is entry else e for e in cache.entries]

    @property
    def misses(self) -> int:
        """Steps whose value guards failed for every plan of their signature (each re-planned)."""
        return sum(max(c.misses - 1, 0) for c in self.plans.values())

    @property
    def segmented(self) -> bool:
        """Whether the last call ran with graph breaks."""
        return isinstance(self.last, _SegmentedEntry)

    def _run_segmented(self, e: _SegmentedEntry, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        loss, grads = e.step.run(inputs)
        params = list(self.params.values())
        if self.optimizer is None:
            _accumulate(zip(params, grads))
            return loss
        if self.max_grad_norm is not None:
            grads = clip_gradients(list(grads), self.max_grad_norm)
        # torch.optim's own update on these gradients; .grad is put back as it was.
        old = [p.grad for p in params]
        try:
            for p, g in zip(params, grads):
                p.grad = g
            self.optimizer.step()
        finally:
            for p, g in zip(params, old):
                p.grad = g
        held = _held(self.optimizer)
        _accumulate((p, g) for p, g in zip(params, grads) if id(p) not in held)
        return loss

    def _loss_of(self, k: int) -> Callable:
        loss_fn = self.loss_fn

        def loss_of(out, xs):
            return loss_fn(out, *xs[k:]) if loss_fn is not None else default_loss(out, "memfit.fit")
        return loss_of

    def _segmented(self, inputs: Sequence[torch.Tensor], why: str,
                   written: Sequence[torch.Tensor] = ()) -> _SegmentedEntry:
        """The step for this signature split at graph breaks (memfit.segments). `written`:
        tensors outside the model the step writes in place, put back after the runs that
        set the breaks up (the model's own state is put back by those runs)."""
        from .op_breaks import segmented_step

        k = self._model_inputs(len(inputs))
        self.captures += 1
        saved = [(t, t.detach().clone()) for t in written]
        try:
            step = segmented_step(self.model, self._loss_of(k), tuple(inputs), k, self._plan_segment,
                                  self._limits_beside, self._optimizer_state_bytes(), fake=self.fake)
        finally:
            with torch.no_grad():
                for t, v in saved:
                    t.copy_(v)
        return _SegmentedEntry(step, why, {"segments": step.describe()})

    def _plan_segment(self, g, mem_limit=None):
        """A segment's joint graph planned: under mem_limit bytes (what the segmented step
        leaves it) or, without, as the limits given to fit say (program order without any)."""
        if mem_limit is None and self.limit["lat_limit_ratio"] is None:
            return program_order_plan(g), {}
        limit = {"mem_limit": mem_limit} if mem_limit is not None else {
            "lat_limit_ratio": self.limit["lat_limit_ratio"]}
        return self._optimize(g, limit)

    def _limits_beside(self, pairs) -> List[Optional[int]]:
        """The bytes each graph of (graph, fixed) pairs may use, where `fixed` bytes its
        plan does not hold are held across it (a segment's: the parameters, optimizer
        state and saved activations of the others; a step whose update torch.optim
        runs: the optimizer's state): fit's mem_limit less them; with mem_limit_ratio
        r, r of the step's program-order peak (the largest fixed + simulated peak of
        a graph) less them. None each under a latency limit or none."""
        if self.limit["mem_limit"] is not None:
            from .native import parse_bytes

            total = parse_bytes(self.limit["mem_limit"])
        elif self.limit["mem_limit_ratio"] is not None:
            from .native import simulate

            peaks = [simulate(g, device=self._profile())["peak_bytes"] for g, _ in pairs]
            total = int(self.limit["mem_limit_ratio"] * max((p + f for p, (_, f) in zip(peaks, pairs)), default=0))
        else:
            return [None] * len(pairs)
        out = []
        for g, fixed in pairs:
            if total <= fixed:
                raise Error(f"memfit.fit: the limit ({total} bytes) leaves nothing for '{g.name}': {fixed} bytes are "
                            f"held across it (parameters, optimizer state, saved activations)")
            out.append(total - fixed)
        return out

    def _model_inputs(self, n: int) -> int:
        k = self.num_model_inputs
        if k is None:
            k = n - 1 if (self.loss_fn is not None and n > 1) else n
        if not 0 < k <= n:
            raise Error(f"memfit.fit: num_model_inputs={k} with {n} inputs")
        return k

    def _optimize(self, g, limit: Dict[str, Any]):
        from .native import optimize

        options = dict(self.optimize_options)
        if self._run_device().type == "cpu":
            # On the CPU "host" is the same memory: a swap frees nothing and costs a copy.
            options.setdefault("swap", False)
        # Training equal to eager, bit for bit, unless asked: a fission
        # sums the parts' gradients and losses in another order (equal
        # within rounding, docs/fission.md).
        asked = "fission" in options
        options.setdefault("fission", False)
        try:
            res = optimize(g, device=self._profile(), **limit, **options)
        except NoPlanFits as e:
            # The limit is above the fixed bytes and the alignment's bound: splitting ops may reach less.
            if asked:
                raise
            raise NoPlanFits(f"{e}; fit(..., fission=True) splits ops into parts and may reach less (gradients "
                             f"then equal eager's within rounding, not bit for bit)", e.reached_bytes) from None
        return res.plan, res.figures

    def _run_device(self) -> torch.device:
        return next(iter(self.params.values())).device if self.params else torch.device("cpu")

    def _fill(self, e: _Entry, S: List[Any], P: List[float], create: bool) -> None:
        """Puts the optimizer's state tensors into S and this call's numbers into P. A state
        torch.optim would create on this step is created in optimizer.state (create), or is
        a fresh tensor that only S holds (not create: FitStep.check)."""
        opt = self.optimizer
        if opt is None or e.eager_update:
            return
        state = opt.state
        fresh: Dict[Tuple[int, str], torch.Tensor] = {}
        new_momentum = set()  # torch's first momentum step copies the gradient: 0 * m + 1 * d_p
        for p, key in e.states_to_create:
            st = state[p] if create else state.get(p, {})
            if st.get(key) is None:
                value = (torch.tensor(0.0) if key == "step"
                         else torch.zeros_like(p, memory_format=torch.preserve_format))
                if key == "momentum_buffer":
                    new_momentum.add(p)
                if create:
                    st[key] = value
                else:
                    fresh[(id(p), key)] = value
        for pos, p, key in e.state_slots:
            S[pos] = fresh.get((id(p), key)) if (id(p), key) in fresh else state[p][key]
        groups = opt.param_groups
        base = [update_scalars(self.kind, _hyper(self.kind, g)) for g in groups]
        for slot, gi, name in e.group_slots:
            P[slot] = base[gi][name]
        per_step: Dict[Tuple[int, float], Dict[str, float]] = {}
        for slot, gi, p, name in e.param_slots:
            if name == "one_minus_dampening":
                P[slot] = 1.0 if p in new_momentum else base[gi][name]
                continue
            step_t = fresh.get((id(p), "step"))
            steps = float(step_t if step_t is not None else state[p]["step"])
            vals = per_step.get((gi, steps))
            if vals is None:
                vals = per_step[(gi, steps)] = update_scalars(self.kind, _hyper(self.kind, groups[gi]), steps)
            P[slot] = vals[name]

    def _run(self, e: _Entry, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        opt = self.optimizer
        S = e.template
        self._fill(e, S, e.scalars, create=True)
        tensors = input_tensors(inputs)
        for pos, i in e.input_slots:
            S[pos] = tensors[i]
        try:
            outs = e.compiled(S, e.scalars)
        finally:
            for pos, _ in e.input_slots:
                S[pos] = None
        if e.eager_update:
            # torch.optim's own step on the plan's gradients; .grad is put back as it was
            # (a parameter the loss does not reach gets no gradient and no update).
            old = {p: p.grad for p in self.params.values()}
            try:
                for p in old:
                    p.grad = None
                for i, p in e.grads:
                    p.grad = outs[i]
                opt.step()
            finally:
                for p, g in old.items():
                    p.grad = g
        elif opt is not None:
            # What lr_scheduler checks of optimizer.step (torch 1.13: a call count; 2.x: a flag).
            if hasattr(opt, "_step_count"):
                opt._step_count += 1
            opt._opt_called = True
        _accumulate((p, outs[i]) for i, p in e.accumulated)
        return outs[0]

    # ---- capture, plan, compile ------------------------------------------------------------

    def _prepare(self, inputs: Sequence[torch.Tensor], again: bool = False) -> _Entry:
        """The entry for a new signature or guard miss: captured and planned, or
        segmented where the step does not capture whole. `again`
        (_capture_again): an Error instead, also where the capture reads values
        (guards that may miss at every step, each miss a capture and plan)."""
        k = self._model_inputs(len(inputs))
        loss_fn = self.loss_fn
        wrapped = None if loss_fn is None else (lambda out, *xs: loss_fn(out, *xs[k:]))

        updates, slot_of, group_slots, param_slots = self._symbolic_updates()
        run_device = self._run_device() if self.params else input_tensors(inputs)[0].device
        if self.plan_given is not None:
            # A plan made elsewhere (FitStep.save_plan): no capture here (the machine may have another torch);
            # its sources are bound by name and checked against the model, inputs and optimizer.
            plan = load_plan(self.plan_given)
            constants = {}
            if isinstance(self.plan_given, (str, os.PathLike)) and os.path.exists(f"{self.plan_given}.constants.pt"):
                constants = torch.load(f"{self.plan_given}.constants.pt")
            made_for = plan.graph.metadata.get("input_constants", "[]")
            if _constants_repr(inputs) != made_for:
                raise Error(f"memfit.fit: the given plan holds the inputs that are not tensors as constants "
                            f"{made_for}; this step passes {_constants_repr(inputs)}")
            self.captures += 1
            compiled = compile_plan(plan, device=run_device, scalars=slot_of)
            same_constants = lambda *xs: _constants_repr(xs) == made_for  # noqa: E731
            return self._bind(compiled, plan, constants, same_constants, inputs, group_slots, param_slots,
                              self._update_figures({}, self._state_beside()))
        # The capture must not move torch's generators (fake tracing should not, but be sure).
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        try:
            def traced(fake: bool):
                return capture(self.model, tuple(inputs), loss_fn=wrapped, name=type(self.model).__name__,
                               num_module_inputs=k, optimizer=updates if updates else None, fake=fake,
                               max_grad_norm=self.max_grad_norm)

            if self.fake is False:
                cap = traced(False)
            else:
                try:
                    cap = traced(True)
                except Error as e:
                    if self.fake or isinstance(e, (StepNotAGraph, PythonStateChanged)):
                        raise
                    # torch 1.13 lacks a few meta kernels (aten._adaptive_avg_pool2d_backward), a step
                    # that reads a tensor's value needs the value, fake mode has limits: trace for real
                    # (runs the step on copies of the parameters; the model is not changed; the values
                    # read become guards).
                    cap = traced(False)
        except Error as e:
            if self.fake:
                raise
            failed = e
        else:
            failed = None
        finally:
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        if failed is not None:
            if again:
                raise failed
            # A step that cannot be one graph runs with graph breaks (memfit.segments).
            try:
                entry = self._segmented(inputs, f"the whole step does not capture: {str(failed).splitlines()[0]}",
                                        getattr(failed, "written", ()))
            except Error as broken:
                # Both reasons: why it is not one graph, and why the breaks did not help.
                raise Error(f"{str(failed).splitlines()[0]} (the step does not capture as one graph; with graph "
                            f"breaks: {str(broken).splitlines()[0]})") from None
            entry.capture_again = isinstance(failed, PythonStateChanged) and not failed.drew
            note = "; captured again after this step, in case the forward sets it only once" \
                if entry.capture_again else ""
            warnings.warn(f"memfit.fit: the step does not capture as one graph ({str(failed).splitlines()[0]}); "
                          f"running it with graph breaks ({entry.step.describe()}){note}", stacklevel=4)
            return entry
        if again and cap.value_guards:
            raise Error(f"the step reads a value ({cap.value_guards[0].what})")
        if cap.value_guards and not self.specialize:
            return self._segmented(inputs, f"specialize=False and the step reads a value "
                                           f"({cap.value_guards[0].what})")
        self.captures += 1
        g = cap.graph
        figures: Dict[str, Any] = {}
        limit = {k2: v for k2, v in self.limit.items() if v is not None}
        beside = self._state_beside()
        if not limit:
            plan = program_order_plan(g)
        else:
            # The optimizer's state is held across the step, outside the graph.
            held = beside is not None and "lat_limit_ratio" not in limit
            if held:
                limit = {"mem_limit": self._limits_beside([(g, beside)])[0]}
            try:
                plan, figures = self._optimize(g, limit)
            except Error as e:
                if not held:
                    raise
                raise Error(f"memfit.fit: torch.optim.{type(self.optimizer).__name__}'s own step runs after the "
                            f"plan, its state ({beside} bytes) held beside it, which leaves the plan "
                            f"{limit['mem_limit']} bytes of the limit: {e}") from None
        figures = self._update_figures(figures, beside)
        compiled = compile_plan(plan, device=run_device, scalars=slot_of)
        guarded = cap.value_guards or cap.input_constants
        entry = self._bind(compiled, plan, cap.inputs, cap if guarded else None, inputs, group_slots,
                           param_slots, figures)
        # The entry keeps the capture for its guards only: not the copies of the parameters
        # and the eager reference a real capture holds.
        cap.inputs, cap.grads, cap.updated, cap.loss = {}, {}, {}, None
        return entry

    def _profile(self) -> str:
        if self.device_profile is not None:
            return self.device_profile
        first = next(iter(self.params.values()), None)
        if first is not None and first.device.type == "cuda":
            name = torch.cuda.get_device_name(first.device).lower()
            for known in ("h200", "h100", "a100", "v100", "3090"):
                if known in name:
                    return "rtx3090" if known == "3090" else known
            return "a100"
        return "cpu"

    def _symbolic_updates(self):
        """Per-parameter updates traced with placeholder numbers, and where each placeholder's
        value comes from: (updates, {placeholder: slot}, group slots, parameter slots)."""
        opt = self.optimizer
        if not self._update_in_graph():
            return {}, {}, [], []
        name_of = {id(p): n for n, p in self.params.items()}
        slot_of: Dict[float, int] = {}
        group_slots: List[Tuple[int, int, str]] = []
        param_slots: List[Tuple[int, int, torch.Tensor, str]] = []

        def new_slot() -> float:
            value = (len(slot_of) + 1) * _SENTINEL_UNIT
            slot_of[value] = len(slot_of)
            return value

        updates: Dict[str, ParamUpdate] = {}
        for gi, group in enumerate(opt.param_groups):
            hyper = _hyper(self.kind, group)
            shared = {}
            for name in SCALAR_NAMES[self.kind]:
                if name in STEP_SCALARS or name == "one_minus_dampening":
                    continue
                shared[name] = new_slot()
                group_slots.append((slot_of[shared[name]], gi, name))
            for p in group["params"]:
                pname = name_of.get(id(p))
                if pname is None:
                    of_loss = isinstance(self.loss_fn, torch.nn.Module) and any(
                        q is p for q in self.loss_fn.parameters())
                    raise Error(f"memfit.fit: optimizer param_groups[{gi}] holds a tensor of shape {list(p.shape)} "
                                f"that is not a parameter of the model" + (
                                    f" but of loss_fn ({type(self.loss_fn).__name__}); fit trains the model's "
                                    f"parameters: make the loss a submodule of a module that holds both, its "
                                    f"forward returning the loss, and pass loss_fn=None" if of_loss else ""))
                scalars = dict(shared)
                for name in SCALAR_NAMES[self.kind]:
                    if name in STEP_SCALARS or name == "one_minus_dampening":
                        scalars[name] = new_slot()
                        param_slots.append((slot_of[scalars[name]], gi, p, name))
                keys = (["momentum_buffer"] if hyper["momentum"] != 0 else []) if self.kind == "sgd" else [
                    "exp_avg", "exp_avg_sq", "step"]
                updates[pname] = ParamUpdate(self.kind, hyper, {key: None for key in keys}, 0.0, scalars)
        return updates, slot_of, group_slots, param_slots

    def _bind(self, compiled: CompiledPlan, plan: Plan, constants: Dict[str, torch.Tensor], guards, inputs,
              group_slots, param_slots, figures) -> _Entry:
        """The sources of the compiled step bound to the model's parameters and buffers, the call's inputs,
        the optimizer's states and traced constants, each checked against the graph's shape and dtype."""
        g = compiled.graph
        used = set()
        for op in g.ops:
            used.update(op.inputs)
        tensors = input_tensors(inputs)
        slot_of_input = {name: i for i, name in enumerate(input_names(inputs))}
        state_key = {}
        eager_update = self.optimizer is not None and not self._update_in_graph()
        if self.optimizer is not None and not eager_update:
            for pname, p in self.params.items():
                for key in ("momentum_buffer", "exp_avg", "exp_avg_sq", "step"):
                    state_key[f"{pname}.{key}"] = (p, key)
        template: List[Any] = []
        input_slots, state_slots, creates = [], [], []
        run_device = compiled.device
        for pos, tid in enumerate(compiled.sources):
            t = g.tensors[tid]
            name = t.name
            value = None
            like = None  # what the source will be: checked against the graph's declaration
            if name in self.params and t.role == "parameter":
                value = like = self.params[name]
            elif name in self.buffers and t.role == "buffer":
                value = like = self.buffers[name]
            elif name in slot_of_input and t.role == "input":
                input_slots.append((pos, slot_of_input[name]))
                like = tensors[slot_of_input[name]]
            elif name in state_key and t.role == "optimizer_state":
                p, key = state_key[name]
                like = torch.empty((), dtype=torch.float32) if key == "step" else p
                if tid in used:
                    state_slots.append((pos, p, key))
                    creates.append((p, key))
            elif name in constants:
                value = like = constants[name].to(run_device)
            elif tid in used:
                raise Error(f"memfit.fit: the step's graph has a source '{name}' ({t.role}) that is not a parameter, "
                            f"buffer, input, optimizer state or traced constant of this model and optimizer")
            if like is not None and (list(like.shape) != list(t.shape) or DTYPE_NAMES.get(like.dtype) != t.dtype):
                raise Error(f"memfit.fit: source '{name}' of the step's graph is {t.dtype}{list(t.shape)}, the "
                            f"model's is {DTYPE_NAMES.get(like.dtype, like.dtype)}{list(like.shape)}")
            template.append(value)
        # Only parameters whose state the graph reads get one (torch.optim skips those without a gradient).
        with_state = {id(p) for _, p, _ in state_slots}
        param_slots = [s for s in param_slots if id(s[2]) in with_state]
        grads = []
        for i, tid in enumerate(compiled.outputs):
            name = g.tensors[tid].name
            if name.endswith(".grad") and name[:-5] in self.params:
                grads.append((i, self.params[name[:-5]]))
        held = _held(self.optimizer)
        accumulated = [(i, p) for i, p in grads if id(p) not in held]
        if not (self.optimizer is None or eager_update):
            grads = []
        return _Entry(compiled, plan, template, input_slots, state_slots, [0.0] * len(compiled.slots), group_slots,
                      param_slots, creates, figures, guards, g, grads, accumulated, eager_update)

    # ---- checking against the interpreter ----------------------------------------------------

    def check(self, *inputs: torch.Tensor) -> Dict[str, float]:
        """Runs one step of these inputs' plan twice from the same state, through the generated
        code and through the interpreter (memfit.plan.execute), on copies: the model, the
        optimizer and torch's generator are left as they were. Returns the largest absolute
        difference per graph output and per source written in place (all 0.0 when the
        generated code does what the plan says)."""
        import copy as _copy

        from .plan import execute

        e = self._entry(inputs)
        if isinstance(e, _SegmentedEntry):
            raise Error("memfit.fit: check compares one plan with the interpreter; this step runs with graph "
                        f"breaks ({e.why})")
        S: List[Any] = list(e.template)
        P: List[float] = list(e.scalars)
        self._fill(e, S, P, create=False)
        tensors = input_tensors(inputs)
        for pos, i in e.input_slots:
            S[pos] = tensors[i]
        g = e.graph
        names = [g.tensors[tid].name for tid in e.compiled.sources]
        a = [None if v is None else v.detach().clone() for v in S]
        b = [None if v is None else v.detach().clone() for v in S]
        # The interpreter reads the optimizer's numbers from the attributes: this call's values.
        graph = _copy.deepcopy(g)
        slots = e.compiled.slots
        for op in graph.ops:
            for k, v in op.attrs.items():
                if isinstance(v, float) and v in slots:
                    op.attrs[k] = P[slots[v]]
        plan = Plan(graph, e.plan.steps, {})
        rng = torch.get_rng_state()
        try:
            got = e.compiled(a, P)
            torch.set_rng_state(rng)
            ref = execute(plan, {n: v for n, v in zip(names, b) if v is not None}, seed=None, generate=False,
                          track_memory=False, device=str(e.compiled.device)).outputs
        finally:
            torch.set_rng_state(rng)
        diff: Dict[str, float] = {}

        def gap(x: torch.Tensor, y: torch.Tensor) -> float:
            if x.shape != y.shape:
                return float("inf")
            return 0.0 if x.numel() == 0 else float((x.double() - y.double()).abs().max())

        for tid, value in zip(e.compiled.outputs, got):
            name = g.tensors[tid].name
            if name in ref:
                diff[name] = gap(value, ref[name])
        for name, x, y in zip(names, a, b):
            if x is not None and g.tensor_by_name(name).role in ("parameter", "buffer", "optimizer_state"):
                diff[name] = gap(x, y)
        return diff

    # ---- saving plans for another machine --------------------------------------------------

    def save_plan(self, path: str) -> None:
        """Writes the last call's plan (PLAN.json, with its graph) for fit(plan=path) elsewhere,
        e.g. on a machine without the native module; traced constants go to path + ".constants.pt"."""
        if self.last is None:
            raise Error("memfit.fit: save_plan needs a step to have run (the plan is made on the first call)")
        e = self.last
        if isinstance(e, _SegmentedEntry):
            raise Error(f"memfit.fit: save_plan: the last step ran with graph breaks ({e.why}); it has no one plan")
        from .graph import to_dict

        raw = e.plan.raw or {"format": "memfit.plan", "version": 2, "graph": to_dict(e.plan.graph),
                             "steps": e.plan.steps}
        constants = getattr(e.guards, "input_constants", None)
        if constants:
            # The graph holds them: fit(plan=path) refuses a step that passes others.
            raw = {**raw, "graph": {**raw["graph"], "metadata": {**raw["graph"].get("metadata", {}),
                                                                 "input_constants": repr(constants)}}}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(raw, f)
        os.replace(tmp, path)
        consts = {}
        for tid, value in zip(e.compiled.sources, e.template):
            t = e.graph.tensors[tid]
            if value is not None and t.role not in ("parameter", "buffer"):
                consts[t.name] = value.cpu()
        if consts:
            torch.save(consts, path + ".constants.pt")


def _constants_repr(inputs: Sequence[Any]) -> str:
    """The step inputs' values that are not tensors, as a saved plan records them."""
    return repr(input_constants(inputs))


def retain_cpu_memory() -> bool:
    """Asks glibc's malloc to keep freed memory in the process: no trimming of the heap's
    top, no mmap for large blocks (mallopt M_TRIM_THRESHOLD, M_MMAP_MAX), as PyTorch's
    caching allocator does on CUDA. Process-wide, for eager PyTorch too. On the CPU a
    training step frees and allocates large tensors every step; by default glibc returns
    them to the OS and the next step page-faults them back (measured: +10% on resnet18,
    and which of eager or memfit's plan pays more depends on the order of frees).
    False where it is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_trim_threshold, 2 ** 31 - 1)) and bool(mallopt(m_mmap_max, 0))


_retain_cpu_memory = retain_cpu_memory  # fit's keyword of the same name hides it there


def fit(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], loss_fn: Optional[Callable],
        example_inputs: Sequence[torch.Tensor], *, mem_limit=None, mem_limit_ratio: Optional[float] = None,
        lat_limit_ratio: Optional[float] = None, device: Optional[str] = None,
        num_model_inputs: Optional[int] = None, plan=None, fake: Optional[bool] = None, specialize: bool = True,
        retain_cpu_memory: bool = True, max_grad_norm: Optional[float] = None, **optimize_options) -> FitStep:
    """A callable that runs one whole training step of `model` (forward, loss_fn,
    backward, optimizer update) under memfit's plan: loss = step(*inputs).

    mem_limit (bytes or "8GiB"), mem_limit_ratio (of the step's unoptimized
    simulated peak) or lat_limit_ratio: at most one; none runs program order
    (no optimization; the native module is then not needed).
    device: memfit's device profile for planning ("cpu", "a100", "h200", a
    device .json); by default "cpu" for a model on the CPU and the GPU's name
    on CUDA. The step runs where the model's parameters are.
    plan: a plan made elsewhere (FitStep.save_plan, or memfit optimize on the
    graph of memfit.fit's capture) for this model, optimizer and input
    shapes: nothing is captured or optimized; its sources are bound by name
    and checked (shape, dtype). For a machine with another torch and no
    native module (FitStep.save_plan's docstring).
    fake: how the step is captured: None (default) with fake tensors, and for
    real (the step runs once on copies; the model is not changed) when that
    fails: torch lacks a meta kernel for one of its ops (torch 1.13:
    adaptive_avg_pool2d's backward), the step reads a tensor's value, or a
    fake-mode limit; True: fake only; False: real only.
    optimize_options: costs, time_budget, work_budget, deterministic, method,
    swap, recompute, reorder, recompute_random, fission (memfit.optimize's). A model on
    the CPU is planned with swap=False unless swap is given: there host and
    device are the same memory, so a swap would free nothing (and the "cpu"
    device profile never swaps, whatever swap says). fission is off
    unless given (fission=True): split parts sum gradients and losses in
    another order, so training equals eager's within rounding, not bit for bit.

    specialize: a step whose Python reads a tensor's value (`.item()`, an `if`
    on a tensor, `.tolist()`, `.numpy()`, a data-dependent shape) is captured
    for real and specialized on the values it read (guards, checked before
    every step; a changed value re-captures and re-plans, up to 8 plans per
    signature). With specialize=False such a step runs with graph breaks
    instead (memfit.segments: the largest submodules that read no value are
    planned segments, the rest runs eagerly); so does a step that does not
    capture whole, and one whose guards miss REPLAN_WARN_AFTER steps in a row
    (warned once).

    retain_cpu_memory: for a model on the CPU, memfit.retain_cpu_memory() is
    called (once is enough; it is process-wide and stays): glibc's malloc then
    keeps freed memory for the next step instead of returning it to the OS
    and page-faulting it back, as PyTorch's caching allocator does on CUDA.
    Without it the step time depends on the allocator's trimming, not on the
    plan (resnet18: thousands of minor faults per step and +9-13% of CPU
    time in docs/python.md's measurement), and the simulator, which has no
    allocator model, cannot predict it. The cost: the process's resident
    memory stays at its high-water mark instead of shrinking between steps
    (and after training). retain_cpu_memory=False leaves malloc as it is.
    Nothing is changed for a model on CUDA (FitStep.retained_cpu_memory
    says whether it was applied; False too where the C library is not glibc).

    max_grad_norm: the gradients are clipped before the update as
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm) between
    loss.backward() and optimizer.step() clips them, with its ops, so the
    training still equals eager's (inside the plan, or before torch.optim's
    own step where that runs it). Needs an optimizer.

    example_inputs are captured (fake tensors: nothing runs, nothing changes)
    at once, so errors show here rather than at the first step; the step's
    plan is made then and cached for that signature.
    """
    step = FitStep(model, optimizer, loss_fn, mem_limit=mem_limit, mem_limit_ratio=mem_limit_ratio,
                   lat_limit_ratio=lat_limit_ratio, device=device, num_model_inputs=num_model_inputs, plan=plan,
                   fake=fake, specialize=specialize, retain_cpu_memory=retain_cpu_memory,
                   max_grad_norm=max_grad_norm, **optimize_options)
    step.last = step._entry(tuple(example_inputs))
    return step
