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


def _like(arg: str) -> Callable:
    """A rule whose result has the shape, dtype and device of argument `arg`
    (grad_input of most backward ops)."""
    def rule(func, args, kwargs):
        a = _bound_args(func, args, kwargs)[arg]
        return a.new_empty(a.shape)
    return rule


def _nll_loss2d_forward_meta(func, args, kwargs):
    a = _bound_args(func, args, kwargs)
    self = a["self"]
    n, _, h, w = self.shape
    out = self.new_empty((n, h, w)) if a.get("reduction", 1) == 0 else self.new_empty(())
    return out, self.new_empty(())


def _weight_norm_meta(func, args, kwargs):
    a = _bound_args(func, args, kwargs)
    v, g = a["v"], a["g"]
    return v.new_empty(v.shape), g.new_empty(g.shape, dtype=torch.float32 if g.dtype == torch.half else g.dtype)


def _weight_norm_backward_meta(func, args, kwargs):
    a = _bound_args(func, args, kwargs)
    return a["saved_v"].new_empty(a["saved_v"].shape), a["saved_g"].new_empty(a["saved_g"].shape)


def _pooled(extent: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    # ATen's pooling_output_shape.
    span = extent + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= extent + pad:
        out -= 1
    return out


def _max_pool3d_meta(func, args, kwargs):
    a = _bound_args(func, args, kwargs)
    self = a["self"]
    k = list(a["kernel_size"]) * (3 if len(a["kernel_size"]) == 1 else 1)
    stride = list(a.get("stride") or k)
    stride = stride * 3 if len(stride) == 1 else stride
    pad = list(a.get("padding", [0]))
    pad = pad * 3 if len(pad) == 1 else pad
    dil = list(a.get("dilation", [1]))
    dil = dil * 3 if len(dil) == 1 else dil
    ceil = bool(a.get("ceil_mode", False))
    spatial = [_pooled(int(self.shape[-3 + i]), k[i], stride[i], pad[i], dil[i], ceil) for i in range(3)]
    shape = list(self.shape[:-3]) + spatial
    return self.new_empty(shape), self.new_empty(shape, dtype=torch.int64)


def _ctc_loss_meta(func, args, kwargs):
    a = _bound_args(func, args, kwargs)
    log_probs, targets = a["log_probs"], a["targets"]
    lengths = a["target_lengths"]
    if isinstance(lengths, torch.Tensor):
        raise NoMetaKernel(func, NotImplementedError("target lengths given as a tensor: the shape depends on "
                                                     "their values"))
    t, n = int(log_probs.shape[0]), int(log_probs.shape[1]) if log_probs.dim() == 3 else 1
    longest = int(targets.shape[1]) if targets.dim() == 2 else max(lengths, default=0)
    return log_probs.new_empty((n,) if log_probs.dim() == 3 else ()), \
        log_probs.new_empty((n, t, 2 * longest + 1))


def _grid_sampler_2d_backward_meta(func, args, kwargs):
    a = _bound_args(func, args, kwargs)
    mask = a.get("output_mask", [True, True])
    inp, grid = a["input"], a["grid"]
    return (inp.new_empty(inp.shape) if mask[0] else None), grid.new_empty(grid.shape)


def _embedding_bag_dense_backward_meta(func, args, kwargs):
    a = _bound_args(func, args, kwargs)
    grad = a["grad"]
    return grad.new_empty((a["num_weights"], grad.shape[-1]))


def _rules() -> Dict[Any, Callable]:
    aten = torch.ops.aten
    rules: Dict[Any, Callable] = {
        aten.convolution_backward.default: _convolution_backward_meta,
        aten.nll_loss2d_forward.default: _nll_loss2d_forward_meta,
        aten._weight_norm_interface.default: _weight_norm_meta,
        aten._weight_norm_interface_backward.default: _weight_norm_backward_meta,
        aten.max_pool3d_with_indices.default: _max_pool3d_meta,
        aten._ctc_loss.default: _ctc_loss_meta,
        aten.grid_sampler_2d_backward.default: _grid_sampler_2d_backward_meta,
        aten._embedding_bag_dense_backward.default: _embedding_bag_dense_backward_meta,
    }
    # Backward ops whose one result is grad_input, shaped like `self`.
    for name in ("_adaptive_avg_pool2d_backward", "_adaptive_avg_pool3d_backward", "nll_loss2d_backward",
                 "reflection_pad1d_backward", "reflection_pad2d_backward", "reflection_pad3d_backward",
                 "replication_pad1d_backward", "replication_pad2d_backward", "replication_pad3d_backward",
                 "max_pool3d_with_indices_backward", "smooth_l1_loss_backward", "huber_loss_backward",
                 "avg_pool3d_backward", "adaptive_max_pool3d_backward", "fractional_max_pool2d_backward"):
        packet = getattr(aten, name, None)
        if packet is not None:
            rules[packet.default] = _like("self")
    rules[aten._ctc_loss_backward.default] = _like("log_probs")
    return rules


# Shape rules for ops that have no meta kernel in some torch versions (1.13:
# aten.convolution_backward, which the meta device sends to
# convolution_backward_overrideable; the others found by capturing every
# torchvision 0.14 constructor and the idioms corpus with fake tensors,
# python/bench/capture_coverage.py --fake). Used only when torch's own fails.
_META_RULES: Dict[Any, Callable] = _rules()


def _cpu_eval_batch_norm(func, args, kwargs, out):
    """native_batch_norm in evaluation on the CPU: the real kernel returns its
    (unused) saved statistics empty, the meta kernel per channel (as CUDA's
    kernel does). A frozen BatchNorm (eval mode while the model trains) was
    captured as [C] and refused where the graph ran as [0]."""
    a = _bound_args(func, args, kwargs)
    x = a["input"]
    if a["training"] or x.device.type != "cpu":
        return out
    return out[0], out[1].new_empty((0,)), out[2].new_empty((0,))


def _cpu_embedding_bag(func, args, kwargs, out):
    """_embedding_bag on the CPU (torch 1.13's _embedding_bag_cpu_impl): its
    bookkeeping tensors have other sizes than the meta kernel's. offset2bag is
    empty for a sum without padding_idx (else one per index), bag_size one per
    bag (the meta kernel: one per offset, the last one included), max_indices
    one per bag and feature for max, else one per bag (the meta kernel: empty).
    Fake-captured graphs declared the meta sizes, and the interpreter refused
    the real ones ("output 'getitem_3' has shape [16], the graph declares [0]")."""
    a = _bound_args(func, args, kwargs)
    weight, indices = a["weight"], a["indices"]
    if weight.device.type != "cpu" or indices.dim() != 1:
        return out
    output, offset2bag, bag_size, max_indices = out
    bags, mode = output.shape[0], a.get("mode", 0)
    summed = mode == 0 and a.get("padding_idx", -1) < 0
    return (output, offset2bag.new_empty((0,) if summed else (indices.shape[0],)), bag_size.new_empty((bags,)),
            max_indices.new_empty((bags, weight.shape[1]) if mode == 2 else (bags,)))


def _probe_cpu_statistics() -> Dict[Any, torch.dtype]:
    """(op, input dtype) -> the dtype torch's CPU kernel gives a normalization's
    saved statistics for a reduced-precision input, where the meta kernel says
    another: learned from one tiny real call each (torch 1.13: the input's own
    dtype, bf16; the meta kernels: float). An op the CPU lacks for a dtype
    (1.13's layer norm in f16) is left out."""
    aten = torch.ops.aten
    found = {}
    for dtype in (torch.bfloat16, torch.float16):
        x, w, b = torch.ones(2, 2, 2, dtype=dtype), torch.ones(2, dtype=dtype), torch.zeros(2, dtype=dtype)
        calls = {aten.native_layer_norm.default: lambda: aten.native_layer_norm.default(x, [2], w, b, 1e-5),
                 aten.native_batch_norm.default: lambda: aten.native_batch_norm.default(x, w, b, None, None, True,
                                                                                          0.1, 1e-5),
                 aten.native_group_norm.default: lambda: aten.native_group_norm.default(x, w, b, 2, 2, 2, 1, 1e-5)}
        for op, call in calls.items():
            try:
                found[(op, dtype)] = call()[1].dtype
            except Exception:  # noqa: BLE001 - not implemented for this dtype on the CPU
                pass
    return found


_CPU_STATISTICS = _probe_cpu_statistics()


def _cpu_statistics(func, args, kwargs, out):
    """A layer / batch / group norm of a reduced-precision input on the CPU: its
    saved statistics in the dtype the real kernel gives them (a fake-captured
    bf16 model declared float where the step held bf16)."""
    if func is torch.ops.aten.native_batch_norm.default:
        out = _cpu_eval_batch_norm(func, args, kwargs, out)
    x = args[0]
    dtype = _CPU_STATISTICS.get((func, x.dtype)) if x.device.type == "cpu" else None
    if dtype is None or out[1].dtype == dtype:
        return out
    return (out[0], *(t.new_empty(t.shape, dtype=dtype) for t in out[1:3]), *out[3:])


# Ops whose meta kernel gives other shapes (or dtypes) than the real kernel on
# the tensor's device: the meta result is corrected to the real one. Applied
# to every call.
_REAL_SHAPES: Dict[Any, Callable] = {torch.ops.aten.native_batch_norm.default: _cpu_statistics,
                                     torch.ops.aten.native_layer_norm.default: _cpu_statistics,
                                     torch.ops.aten.native_group_norm.default: _cpu_statistics,
                                     torch.ops.aten._embedding_bag.default: _cpu_embedding_bag,
                                     torch.ops.aten._embedding_bag_forward_only.default: _cpu_embedding_bag}


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


# In-place ops that change a tensor's shape or strides (the tensor object itself).
METADATA_INPLACE = {"unsqueeze_", "squeeze_", "transpose_", "t_", "as_strided_", "resize_", "resize_as_",
                    "swapdims_", "swapaxes_", "set_"}


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


# Ops a fake mode passes real tensors to by design: torch.tensor()'s data lifted in.
_TAKES_REAL = {getattr(torch.ops.aten, n).default for n in ("lift_fresh", "lift_fresh_copy", "lift")
               if hasattr(torch.ops.aten, n)}


def fake_mode():
    """A FakeTensorMode that never runs a real kernel (no fallback kernels) and
    knows memfit's _META_RULES."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._pytree import tree_map

    class _Mode(FakeTensorMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            # A real tensor the step closes over and reads without a gradient (class
            # weights a loss_fn reads): a constant of the graph, faked here (torch 1.13's
            # mode refuses real inputs; 2.x's allow_non_fake_inputs does this). One that
            # requires grad (a parameter the module holds in a list) is left to fail:
            # as a constant it would not train, and the real capture names it.
            # (aten.lift_fresh takes torch.tensor()'s real data by design.)
            def fake(x):
                return self.from_tensor(x) if type(x) is torch.Tensor and not x.requires_grad else x
            if func not in _TAKES_REAL:
                args, kwargs = tree_map(fake, tuple(args)), tree_map(fake, kwargs or {})
            try:
                out = super().__torch_dispatch__(func, types, args, kwargs)
                fix = _REAL_SHAPES.get(func)
                if fix is None:
                    return out
                with self:
                    return fix(func, args, kwargs or {}, out)
            except Exception as e:  # noqa: BLE001 - 1.13's huber_loss_backward meta raises TypeError
                if isinstance(e, NoMetaKernel):
                    raise
                rule = _META_RULES.get(func)
                if rule is None:
                    if isinstance(e, NotImplementedError):
                        raise NoMetaKernel(func, e) from None
                    raise
                with self:
                    return rule(func, args, kwargs or {})

    return _Mode(allow_fallback_kernels=False)
