"""Tracing a training step on FakeTensors (shapes, dtypes, strides, no data).

Fake tracing (capture(..., fake=True)) runs every op on FakeTensors so a
model too large to run here is captured without running it. An op with no
meta kernel in the installed torch is an error naming it (no silent fallback
to a real kernel); the few that torch 1.13 lacks and memfit's models need have
a shape rule here (_META_RULES).

    mode = fake_mode()
    args = [mode.from_tensor(t) for t in real_args]
    gm = trace_fake(step, args, mode)   # may raise NoMetaKernel
    drop_factory_detaches(gm)           # the graph real tracing gives
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence

import torch
import torch.fx

from .torch_compat import make_fx


def _bound_args(func, args, kwargs) -> Dict[str, Any]:
    bound = {a.name: v for a, v in zip(func._schema.arguments, args)}
    bound.update(kwargs or {})
    return bound


def _convolution_backward_meta(func, args, kwargs):
    # torch 2.x's meta_convolution_backward: contiguous gradients with the
    # sizes of input, weight and bias, None where output_mask is false.
    a = _bound_args(func, args, kwargs)
    grad_output, mask = a["grad_output"], a["output_mask"]
    return (grad_output.new_empty(a["input"].shape) if mask[0] else None,
            grad_output.new_empty(a["weight"].shape) if mask[1] else None,
            grad_output.new_empty(a["bias_sizes"]) if mask[2] else None)


def _adaptive_avg_pool2d_backward_meta(func, args, kwargs):
    # The gradient of the input: self's sizes, in self's memory format (torch 2.x's meta rule).
    a = _bound_args(func, args, kwargs)
    x = a["self"]
    fmt = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
    return a["grad_output"].new_empty(x.shape).contiguous(memory_format=fmt)


# Shape rules for ops that have no meta kernel in some torch versions (1.13:
# aten.convolution_backward, which the meta device sends to
# convolution_backward_overrideable; aten._adaptive_avg_pool2d_backward, which
# torchvision's ResNets use). Used only when torch's own fails.
_META_RULES: Dict[Any, Callable] = {
    torch.ops.aten.convolution_backward.default: _convolution_backward_meta,
    torch.ops.aten._adaptive_avg_pool2d_backward.default: _adaptive_avg_pool2d_backward_meta,
}


def _is_factory(node: torch.fx.Node) -> bool:
    """A call of an op that makes a new tensor from no tensor data (aten.ones, aten.ones_like, aten.arange)."""
    if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
        return False
    schema = node.target._schema
    tensor_args = [a for a in schema.arguments if "Tensor" in str(a.type)]
    return not tensor_args or (schema.name.endswith("_like") and len(tensor_args) == 1)


def drop_factory_detaches(gm: torch.fx.GraphModule) -> None:
    """Removes the aten.detach that fake tracing records right after a factory op.

    torch's variable factories (torch.ones_like, torch.arange, ...) wrap their
    result with make_variable, which shallow-copies -- dispatches aten.detach
    on -- a tensor that is referenced elsewhere. A FakeTensor always is (by
    Python), a real fresh tensor is not, so only fake tracing records it. The
    detach is an alias and costs no memory; dropping it makes the fake graph
    the real one.
    """
    nodes = list(gm.graph.nodes)
    for prev, n in zip(nodes, nodes[1:]):
        if n.op == "call_function" and n.target is torch.ops.aten.detach.default and n.args[0] is prev \
                and _is_factory(prev):
            n.replace_all_uses_with(prev)
            gm.graph.erase_node(n)
    gm.recompile()


class NoMetaKernel(NotImplementedError):
    """Raised under fake_mode() by an op with no meta kernel and no shape rule."""

    def __init__(self, func, cause: BaseException):
        super().__init__(f"{func} has no meta kernel: {cause}")
        self.func = func


def is_fake(value) -> bool:
    """Whether `value` is a FakeTensor (False on a torch without them)."""
    try:
        from torch._subclasses.fake_tensor import FakeTensor
    except ImportError:  # pragma: no cover - torch without fake tensors
        return False
    return isinstance(value, FakeTensor)


def trace_fake(fn: Callable, args: Sequence[Any], mode) -> torch.fx.GraphModule:
    """make_fx of fn on fake `args` under `mode`: aot_autograd's way (real-mode make_fx
    inside the fake mode), the same on torch 1.13 and 2.x. (1.13's
    make_fx(tracing_mode="fake") would make its own mode, which runs a real kernel on
    zeros for an op without a meta kernel; 2.x's would pick up `mode` from the args.)"""
    with mode:
        return make_fx(fn)(*args)


def fake_mode():
    """A FakeTensorMode that never runs a real kernel (no fallback kernels) and
    knows memfit's _META_RULES."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    class _Mode(FakeTensorMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            try:
                return super().__torch_dispatch__(func, types, args, kwargs)
            except NotImplementedError as e:
                if isinstance(e, NoMetaKernel):
                    raise
                rule = _META_RULES.get(func)
                if rule is None:
                    raise NoMetaKernel(func, e) from None
                with self:
                    return rule(func, args, kwargs or {})

    return _Mode(allow_fallback_kernels=False)
