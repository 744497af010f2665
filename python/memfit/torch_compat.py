"""The torch APIs the capture needs, on torch 1.13 and 2.x alike.

make_fx is used by both real tracing (capture) and fake tracing (fake_trace),
so it lives here rather than in either.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Set

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
    substituted tensors while inside."""
    from torch.nn.utils.stateless import _reparametrize_module  # torch 1.13 and 2.x

    saved = []
    for prefix, m in module.named_modules():
        names = getattr(m, "_flat_weights_names", None)
        if isinstance(m, torch.nn.RNNBase) and names is not None:
            dot = prefix + "." if prefix else ""
            saved.append((m, m._flat_weights))
            m._flat_weights = [state.get(dot + n, w) for n, w in zip(names, m._flat_weights)]
    try:
        with _reparametrize_module(module, state):
            yield
    finally:
        for m, weights in saved:
            m._flat_weights = weights


@contextmanager
def checkpoints_run_directly() -> Iterator[None]:
    """While inside, torch.utils.checkpoint(fn, *args) runs fn(*args) once, as a
    plain call.

    Eager runs fn in the forward and again in the backward with the RNG state of
    the forward (under fork_rng: the generator ends where the forward left it),
    so a dropout inside draws the same mask twice. A trace records both runs'
    draws from one stream: the recomputation drew a second, different mask and
    the gradients were wrong. Run once, the trace has the forward's draws, and
    its values, gradients and final generator state are eager's. What to
    recompute is the plan's choice.

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
        return function(*args, **kwargs)

    class DirectReentrant:
        @staticmethod
        def apply(function, preserve_rng_state, *args):
            if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
                return function(*args)
            with torch.no_grad():
                return function(*args)

    def direct_generator(function, preserve_rng_state=True, context_fn=None, determinism_check=None, debug=None,
                         *args, **kwargs):  # torch 2.x: checkpoint() calls function between two next()
        yield

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
