"""The torch APIs the capture needs, on torch 1.13 and 2.x alike.

make_fx is used by both real tracing (capture) and fake tracing (fake_trace),
so it lives here rather than in either.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch

# The backend kernels eager PyTorch dispatches to (an op with one of these runs it,
# not its CompositeImplicitAutograd decomposition).
_BACKEND_KEYS = ("CPU", "CUDA")


def make_fx(fn: Callable) -> Callable:
    """torch's make_fx(fn) in its default (real) tracing mode, recording the ops
    eager PyTorch runs (see eager_kernels)."""
    try:
        from torch.fx.experimental.proxy_tensor import make_fx as torch_make_fx
    except ImportError:  # pragma: no cover - older torch
        from functorch import make_fx as torch_make_fx
    traced = torch_make_fx(fn)

    def wrapped(*args):
        with eager_kernels():
            return traced(*args)

    return wrapped


def _has_backend_kernel(op) -> bool:
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return any(has(op.name(), key) for key in _BACKEND_KEYS)


@contextmanager
def eager_kernels() -> Iterator[None]:
    """While tracing, an op that has both a kernel of its own for the CPU (or
    CUDA) and a CompositeImplicitAutograd one is recorded as itself, as eager
    PyTorch runs it. make_fx decomposes every op that has a
    CompositeImplicitAutograd kernel (OpOverload.decompose), but eager dispatch
    prefers the backend kernel: in torch 1.13 aten.silu_backward (SiLU's
    backward, EfficientNet) and aten.mish_backward, whose decompositions
    (sigmoid, then multiplications in another order) round differently from the
    fused kernels, so a captured step differed from eager autograd by a few
    ulps. Ops with only a CompositeImplicitAutograd kernel still decompose (eager
    runs that decomposition too)."""
    cls = getattr(torch._ops, "OpOverload", None)
    original = getattr(cls, "decompose", None)
    if original is None:  # pragma: no cover - a torch without it
        yield
        return

    def decompose(self, *args, **kwargs):
        if _has_backend_kernel(self):
            return NotImplemented
        return original(self, *args, **kwargs)

    cls.decompose = decompose
    try:
        yield
    finally:
        cls.decompose = original


# Arguments torch 1.13's schemas leave unannotated although the op writes them
# (its running statistics, in training); torch 2.x annotates them (a!).
_UNANNOTATED_WRITES = {"aten::native_batch_norm": {"running_mean", "running_var"}}


def written_args(op: torch._ops.OpOverload) -> Set[str]:
    """The names of the arguments an ATen op writes in place: its schema's (a!)
    annotations, and those torch 1.13's native_batch_norm leaves unannotated
    (running_mean / running_var: a guard evaluation that ran it on the model's
    buffers updated them a second time each step)."""
    schema = op._schema
    names = {a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write}
    return names | _UNANNOTATED_WRITES.get(schema.name, set())


@contextmanager
def substituted(module: torch.nn.Module, state: Dict[str, torch.Tensor]) -> Iterator[None]:
    """While inside, the module's parameters and buffers are replaced by `state`
    (what functional_call does around one call, here around the forward and
    the loss: a loss_fn that reads a parameter of the model, a CRF's
    transitions, reads the substitute and its gradient is traced).

    Recurrent layers (nn.RNN / GRU / LSTM) run on `_flat_weights`, a list
    they refresh only when a weight is assigned; torch 1.13's reparametrization
    substitutes parameters without assigning, so the layer would use its own
    weights (traced as constants: no gradient). Their lists are pointed at the
    substituted tensors while inside.

    The reparametrization substitutes what attributes read (`self.weight`),
    not what `parameters()`, `named_parameters()` and `buffers()` list: a
    forward that walks them (a momentum encoder's update, `for q, k in
    zip(self.q.parameters(), self.k.parameters())`) read the model's own
    tensors, constants of the graph (a real trace) or an error (fake
    tracing). The modules' parameter and buffer entries are the substitutes
    too while inside."""
    from torch.nn.utils.stateless import _reparametrize_module  # torch 1.13 and 2.x

    saved = []
    entries = []  # (a module's _parameters or _buffers, name, its own tensor, the name in state)
    for prefix, m in module.named_modules():
        dot = prefix + "." if prefix else ""
        names = getattr(m, "_flat_weights_names", None)
        if isinstance(m, torch.nn.RNNBase) and names is not None:
            saved.append((m, m._flat_weights))
            m._flat_weights = [state.get(dot + n, w) for n, w in zip(names, m._flat_weights)]
        for table in (m._parameters, m._buffers):
            for name, own in table.items():
                if own is not None and dot + name in state:
                    entries.append((table, name, own, dot + name))
    try:
        for table, name, _, full in entries:
            table[name] = state[full]
        with _reparametrize_module(module, state):
            yield
    finally:
        for table, name, own, _ in entries:
            table[name] = own
        for m, weights in saved:
            m._flat_weights = weights


class Recomputations:
    """The checkpointed blocks eager's backward runs a second time that write
    tensors they did not make (BatchNorm's running statistics: eager updates
    them in the forward and again in the recomputation, so torchvision's
    DenseNet with memory_efficient=True counts two batches a step). A trace
    runs each block once (checkpoints_run_directly) and then these again,
    after the loss, in the order eager's backward reaches them (the last
    first), under no_grad: their writes are eager's, their other results
    unused."""

    def __init__(self) -> None:
        self.pending = []
        # What each block made, held until the trace ends: in a real trace the
        # block's tensors autograd saved came back from its backward as
        # constants once the block had run again (their proxies lost).
        self.held = []

    def reset(self) -> None:
        self.pending.clear()
        self.held.clear()

    def add(self, function: Callable, args, kwargs, effects: "_BlockEffects") -> None:
        if not effects.writes:
            return
        if effects.random:
            from .graph import Error

            what = getattr(function, "__qualname__", type(function).__name__)
            raise Error(f"a checkpointed block (torch.utils.checkpoint of {what}) draws random numbers "
                        f"({effects.random}) and writes tensors it did not make ({effects.writes}); eager's "
                        f"backward runs it again with the same draws, writing them a second time, which a "
                        f"captured graph cannot replay")
        self.pending.append((function, args, kwargs))
        self.held.append(effects.made)

    def run(self) -> None:
        pending, self.pending = self.pending[::-1], []
        with torch.no_grad():
            for function, args, kwargs in pending:
                function(*args, **kwargs)


class _BlockEffects:
    """While inside: the first op that writes a tensor not made inside (nor a view
    of one) and the first random op (nondeterministic_seeded), by name."""

    def __init__(self) -> None:
        self.writes = ""
        self.random = ""
        self.made: Dict[int, torch.Tensor] = {}  # id -> tensor the block made (held, so ids are not reused)

    @contextmanager
    def watch(self) -> Iterator["_BlockEffects"]:
        from torch.utils._python_dispatch import TorchDispatchMode

        effects = self
        made = self.made

        def own(t) -> bool:
            return id(t) in made or (t._base is not None and id(t._base) in made)

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = func.overloadpacket.__name__
                if not effects.random and torch.Tag.nondeterministic_seeded in func.tags:
                    effects.random = name
                if not effects.writes:
                    written = written_args(func)
                    for i, a in enumerate(func._schema.arguments):
                        v = args[i] if i < len(args) else kwargs.get(a.name)
                        if a.name in written and isinstance(v, torch.Tensor) and not own(v):
                            effects.writes = name
                out = func(*args, **kwargs)
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, torch.Tensor):
                        made[id(t)] = t
                return out

        with _Mode():
            yield self


@contextmanager
def checkpoints_run_directly(recomputations: Recomputations) -> Iterator[None]:
    """While inside, torch.utils.checkpoint(fn, *args) runs fn(*args) once, as a
    plain call.

    Eager runs fn in the forward and again in the backward with the RNG state of
    the forward (under fork_rng: the generator ends where the forward left it),
    so a dropout inside draws the same mask twice. A trace records both runs'
    draws from one stream: the recomputation drew a second, different mask and
    the gradients were wrong. Run once, the trace has the forward's draws, and
    its values, gradients and final generator state are eager's. What to
    recompute is the plan's choice. A block that writes tensors it did not
    make is put in `recomputations` to run again where eager's backward
    would (Recomputations).

    The reentrant checkpoint (use_reentrant=True, torch 1.13's default, and
    checkpoint_sequential's) runs fn under no_grad and again in its backward,
    which refuses torch.autograd.grad ("Checkpointing is not compatible with
    .grad()"), what capture differentiates with: a checkpointed block whose
    input requires grad failed to capture. It runs fn once too, with autograd
    where eager's backward reaches inside (grad mode on and an input that
    requires grad) and under no_grad where it does not (no gradient for the
    parameters inside, as in eager)."""
    import torch.utils.checkpoint as checkpoint

    def direct(function, preserve_rng_state=True, *args, **kwargs):  # torch 1.13
        if not torch.is_grad_enabled():
            return function(*args, **kwargs)
        with _BlockEffects().watch() as effects:
            out = function(*args, **kwargs)
        # Eager's backward recomputes the block when it reaches inside.
        if any(isinstance(t, torch.Tensor) and t.requires_grad for t in _leaves(out)):
            recomputations.add(function, args, kwargs, effects)
        return out

    class DirectReentrant:
        @staticmethod
        def apply(function, preserve_rng_state, *args):
            if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
                with _BlockEffects().watch() as effects:
                    out = function(*args)
                recomputations.add(function, args, {}, effects)
                return out
            with torch.no_grad():
                return function(*args)

    def direct_generator(function, preserve_rng_state=True, context_fn=None, determinism_check=None, debug=None,
                         *args, **kwargs):  # torch 2.x: checkpoint() calls function between two next()
        if not torch.is_grad_enabled():
            yield
            return
        with _BlockEffects().watch() as effects:
            yield
        recomputations.add(function, args, kwargs, effects)

    saved = {}
    for name, replacement in (("_checkpoint_without_reentrant", direct),
                              ("_checkpoint_without_reentrant_generator", direct_generator),
                              ("CheckpointFunction", DirectReentrant)):
        if hasattr(checkpoint, name):
            saved[name] = getattr(checkpoint, name)
            setattr(checkpoint, name, replacement)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(checkpoint, name, original)


@contextmanager
def data_assignments_written() -> Iterator[None]:
    """While inside, `t.data = v` with v of t's shape, dtype and device writes v
    into t (t.copy_(v), outside autograd) instead of giving t v's storage.

    The swap is not an op: a trace did not see it. A momentum encoder's
    update (MoCo: `k.data = m * k.data + (1 - m) * q.data` in the forward)
    was computed and dropped, the graph read the encoder's old weights and
    never stored the new ones, silently. Written in place, the update is an
    op of the graph that writes the parameter, as `p.data.clamp_(...)` is.
    Another shape, dtype or device is an Error (memfit.fit runs such a step
    with graph breaks)."""
    from .graph import Error

    base = next(k.__dict__["data"] for k in torch.Tensor.__mro__ if "data" in k.__dict__)

    def get(self):
        return base.__get__(self)

    def put(self, value):
        if not isinstance(value, torch.Tensor) or (value.shape, value.dtype, value.device) != (
                self.shape, self.dtype, self.device):
            what = f"{value.dtype} {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            raise Error(f"the step assigns `.data` of a {self.dtype} {list(self.shape)} tensor a {what}: a "
                        f"captured graph writes a tensor in place, in its own shape and dtype")
        with torch.no_grad():
            self.copy_(value)

    own = torch.Tensor.__dict__.get("data")  # none in torch 1.13 (the base class's descriptor)
    torch.Tensor.data = property(get, put)
    try:
        yield
    finally:
        if own is None:
            del torch.Tensor.data
        else:
            torch.Tensor.data = own


def gradient_hook_ids(param: torch.Tensor) -> Tuple[int, ...]:
    """The handles of the hooks param.register_hook put on a parameter (a new
    hook changes the step)."""
    hooks = getattr(param, "_backward_hooks", None)
    return tuple(hooks) if hooks else ()


def with_gradient_hooks(param: torch.Tensor, grad: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """grad after the hooks param.register_hook put on the parameter, as
    loss.backward() runs them before accumulating .grad (clipping or masking one
    parameter's gradient). torch.autograd.grad, and a substitute of the
    parameter, leave them out. No gradient runs no hook."""
    hooks = getattr(param, "_backward_hooks", None)
    for hook in (hooks.values() if hooks and grad is not None else ()):
        out = hook(grad)
        grad = grad if out is None else out
    return grad


def backward_grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> List[Optional[torch.Tensor]]:
    """What loss.backward() leaves in each parameter's .grad (None for a frozen one
    and one the loss does not reach), each .grad put back after. Not
    torch.autograd.grad: a reentrant torch.utils.checkpoint recomputes its block
    in its backward, which only .backward() reaches (with autograd.grad its
    parameters get no gradient, unlike in the training loop; a graph-broken
    step running such a block eagerly failed)."""
    saved = [p.grad for p in params]
    try:
        for p in params:
            p.grad = None
        loss.backward(torch.ones_like(loss))
        return [p.grad if p.requires_grad else None for p in params]
    finally:
        for p, g in zip(params, saved):
            p.grad = g


def _leaves(out: Any) -> List[Any]:
    if isinstance(out, (tuple, list)):
        return [x for v in out for x in _leaves(v)]
    if isinstance(out, dict):
        return [x for v in out.values() for x in _leaves(v)]
    return [out]
