"""The torch APIs the capture needs, on torch 1.13 and 2.x alike.

make_fx is used by both real tracing (capture) and fake tracing (fake_trace),
so it lives here rather than in either.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch


def make_fx(fn: Callable) -> Callable:
    """torch's make_fx(fn) in its default (real) tracing mode."""
    try:
        from torch.fx.experimental.proxy_tensor import make_fx as torch_make_fx
    except ImportError:  # pragma: no cover - older torch
        from functorch import make_fx as torch_make_fx
    return torch_make_fx(fn)


def functional_call(module: torch.nn.Module, state: Dict[str, torch.Tensor], args: tuple):
    """module(*args) with its parameters and buffers replaced by `state`.

    Recurrent layers (nn.RNN / GRU / LSTM) run on `_flat_weights`, a list
    they refresh only when a weight is assigned; torch 1.13's functional_call
    substitutes parameters without assigning, so the layer would use its own
    weights (traced as constants: no gradient). Their lists are pointed at the
    substituted tensors for the call."""
    try:
        from torch.func import functional_call as call  # torch >= 2.0
    except ImportError:
        from torch.nn.utils.stateless import functional_call as call
    saved = []
    for prefix, m in module.named_modules():
        names = getattr(m, "_flat_weights_names", None)
        if isinstance(m, torch.nn.RNNBase) and names is not None:
            dot = prefix + "." if prefix else ""
            saved.append((m, m._flat_weights))
            m._flat_weights = [state.get(dot + n, w) for n, w in zip(names, m._flat_weights)]
    try:
        return call(module, state, args)
    finally:
        for m, weights in saved:
            m._flat_weights = weights
