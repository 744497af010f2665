"""The optimizer update of a captured training step.

The update mirrors torch.optim's single-tensor (foreach=False) SGD, Adam and
AdamW op by op, with the Scalar overloads memfit's zoo writes (aten.mul_.Scalar,
aten.add_.Tensor with alpha, aten.addcdiv_, ...); the optimizer state
(momentum buffers; Adam's exp_avg, exp_avg_sq and step count) are sources with
role optimizer_state, updated in place.

    updates = optimizer_updates("adam", params)      # or a torch.optim.SGD / Adam
    apply_update(updates[name], param, grad, state)  # inside the traced step
    reference = torch_optim_step(updates, start_values, grads)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from .graph import Error

# Optimizer names the capture and the command line accept (see optimizer_updates).
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")
DEFAULT_LR = 1e-3  # memfit's zoo default learning rate (TrainingOptions)
DEFAULT_MOMENTUM = 0.9  # for "sgd-momentum"


@dataclass
class ParamUpdate:
    """One parameter's optimizer step, as torch.optim's single-tensor loop does it."""

    kind: str  # "sgd", "adam" or "adamw"
    # torch.optim keyword arguments: sgd: lr, momentum, dampening,
    # weight_decay, nesterov, maximize; adam, adamw: lr, betas, eps,
    # weight_decay, maximize.
    hyper: Dict[str, Any]
    # State keys the graph holds as sources, with their values before the
    # step; None for a state torch would create on this first step (zeros;
    # Adam's step 0).
    state: Dict[str, Optional[torch.Tensor]]
    # Adam: steps taken before this one (torch's state "step").
    steps_before: float = 0.0
    # The Python numbers the update passes to its ops, by name (see
    # update_scalars); when set, they replace the values computed from hyper
    # and steps_before. memfit.fit traces with placeholder values here and
    # substitutes each step's own numbers in the generated code.
    scalars: Optional[Dict[str, float]] = None

    def state_values(self, param: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The state sources' starting values (created like `param`, so fake under a fake mode)."""
        out = {}
        for key, value in self.state.items():
            if value is not None:
                out[key] = value
            elif key == "step":
                out[key] = torch.zeros((), dtype=torch.float32, device=param.device)
            else:
                out[key] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return out


# The hyper-parameters memfit reads from a torch.optim param group, with torch's defaults.
_SGD_DEFAULTS = {"lr": None, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
                 "maximize": False}
_ADAM_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "maximize": False}
_ADAMW_DEFAULTS = dict(_ADAM_DEFAULTS, weight_decay=1e-2)
# By optimizer kind; the torch.optim classes of each.
DEFAULTS = {"sgd": _SGD_DEFAULTS, "adam": _ADAM_DEFAULTS, "adamw": _ADAMW_DEFAULTS}
KINDS = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}
CLASSES = {kind: cls for cls, kind in KINDS.items()}


def _sgd_state_keys(hyper: Dict[str, Any]) -> List[str]:
    return ["momentum_buffer"] if hyper["momentum"] != 0 else []


def optimizer_updates(optimizer, params: Dict[str, torch.Tensor]) -> Dict[str, ParamUpdate]:
    """Per-parameter updates for `optimizer`: one of OPTIMIZERS (torch's defaults,
    lr DEFAULT_LR, first step), or a torch.optim.SGD / Adam / AdamW over the
    module's parameters (its hyper-parameters per group and its current state)."""
    if optimizer is None:
        return {}
    if isinstance(optimizer, dict):
        return optimizer  # already per-parameter updates (memfit.fit's)
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise Error(f"unknown optimizer '{optimizer}' (one of {', '.join(OPTIMIZERS)}, or a torch.optim.SGD / "
                        f"Adam / AdamW instance)")
        if optimizer in ("adam", "adamw"):
            hyper = dict(DEFAULTS[optimizer], lr=DEFAULT_LR)
            return {n: ParamUpdate(optimizer, dict(hyper), {"exp_avg": None, "exp_avg_sq": None, "step": None})
                    for n in params}
        hyper = dict(_SGD_DEFAULTS, lr=DEFAULT_LR, momentum=DEFAULT_MOMENTUM if optimizer == "sgd-momentum" else 0.0)
        return {n: ParamUpdate("sgd", dict(hyper), {k: None for k in _sgd_state_keys(hyper)}) for n in params}
    kind = KINDS.get(type(optimizer))
    if kind is None:
        raise Error(f"optimizer {type(optimizer).__name__} is not supported (torch.optim.SGD, Adam, AdamW, or "
                    f"one of {', '.join(OPTIMIZERS)})")
    name_of = {id(p): n for n, p in params.items()}
    updates: Dict[str, ParamUpdate] = {}
    for gi, group in enumerate(optimizer.param_groups):
        hyper = {k: group.get(k, d) for k, d in DEFAULTS[kind].items()}
        if kind != "sgd" and group.get("amsgrad"):
            raise Error(f"optimizer param_groups[{gi}]: {type(optimizer).__name__} with amsgrad=True is not supported")
        for p in group["params"]:
            pname = name_of.get(id(p))
            if pname is None:
                raise Error(f"optimizer param_groups[{gi}] holds a tensor of shape {list(p.shape)} that is not a "
                            f"parameter of the module")
            given = optimizer.state.get(p, {})
            if kind == "sgd":
                state = {k: given.get(k) for k in _sgd_state_keys(hyper)}
                if "momentum_buffer" in state and state["momentum_buffer"] is None and hyper["dampening"] != 0:
                    raise Error(f"parameter '{pname}': SGD's first step with dampening copies the gradient into the "
                                f"momentum buffer; capture a later step (the optimizer needs a momentum_buffer)")
                updates[pname] = ParamUpdate("sgd", dict(hyper), state)
            else:
                state = {k: given.get(k) for k in ("exp_avg", "exp_avg_sq", "step")}
                step = given.get("step", 0.0)
                updates[pname] = ParamUpdate(kind, dict(hyper), state, float(step))
    return updates


# The names of update_scalars' numbers, per optimizer kind.
SCALAR_NAMES = {
    "sgd": ("weight_decay", "momentum", "one_minus_dampening", "neg_lr"),
    "adam": ("weight_decay", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "bias_correction2_sqrt", "eps",
             "neg_step_size"),
    "adamw": ("decay_factor", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "bias_correction2_sqrt", "eps",
              "neg_step_size"),
}
# The scalars that depend on the step count (Adam's bias corrections); the others only on the hyper-parameters.
STEP_SCALARS = ("bias_correction2_sqrt", "neg_step_size")


def update_scalars(kind: str, hyper: Dict[str, Any], steps_before: float = 0.0) -> Dict[str, float]:
    """The Python numbers torch.optim's single-tensor SGD / Adam / AdamW (torch 1.13)
    pass to their kernels for a step of a parameter group with `hyper`, computed with
    the same float arithmetic; for Adam and AdamW, of the step after `steps_before`
    steps."""
    if kind == "sgd":
        return {"weight_decay": hyper["weight_decay"], "momentum": hyper["momentum"],
                "one_minus_dampening": 1 - hyper["dampening"], "neg_lr": -hyper["lr"]}
    beta1, beta2 = hyper["betas"]
    # torch reads the step on the host (step_t.item()) after incrementing it.
    step = steps_before + 1
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = hyper["lr"] / bias_correction1
    # AdamW decays the parameter itself (param.mul_(1 - lr * weight_decay));
    # Adam adds weight_decay * param to the gradient.
    decay = ({"decay_factor": 1 - hyper["lr"] * hyper["weight_decay"]} if kind == "adamw"
             else {"weight_decay": hyper["weight_decay"]})
    return {**decay, "beta1": beta1, "one_minus_beta1": 1 - beta1, "beta2": beta2,
            "one_minus_beta2": 1 - beta2, "bias_correction2_sqrt": math.sqrt(bias_correction2),
            "eps": hyper["eps"], "neg_step_size": -step_size}


def apply_update(upd: ParamUpdate, param: torch.Tensor, grad: torch.Tensor, state: Dict[str, torch.Tensor]) -> None:
    """torch.optim's _single_tensor_sgd / _adam / _adamw (torch 1.13), in place,
    with the Scalar overloads (identical arithmetic to Python numbers). Which ops
    run depends on upd.hyper (momentum, weight decay, nesterov, maximize); the
    numbers they get are update_scalars' (or upd.scalars when set)."""
    aten = torch.ops.aten
    h = upd.hyper
    s = upd.scalars if upd.scalars is not None else update_scalars(upd.kind, h, upd.steps_before)
    d_p = aten.neg.default(grad) if h["maximize"] else grad
    if upd.kind == "sgd":
        if h["weight_decay"] != 0:
            d_p = aten.add.Tensor(d_p, param, alpha=s["weight_decay"])
        if h["momentum"] != 0:
            buf = state["momentum_buffer"]
            aten.mul_.Scalar(buf, s["momentum"])
            aten.add_.Tensor(buf, d_p, alpha=s["one_minus_dampening"])
            d_p = aten.add.Tensor(d_p, buf, alpha=s["momentum"]) if h["nesterov"] else buf
        aten.add_.Tensor(param, d_p, alpha=s["neg_lr"])
        return
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    aten.add_.Scalar(state["step"], 1)
    if upd.kind == "adam" and h["weight_decay"] != 0:
        d_p = aten.add.Tensor(d_p, param, alpha=s["weight_decay"])
    aten.mul_.Scalar(exp_avg, s["beta1"])
    aten.add_.Tensor(exp_avg, d_p, alpha=s["one_minus_beta1"])
    aten.mul_.Scalar(exp_avg_sq, s["beta2"])
    aten.addcmul_.default(exp_avg_sq, d_p, d_p, value=s["one_minus_beta2"])
    # torch reads the step on the host (step_t.item()): the graph is the
    # update of step steps_before + 1, its bias corrections constants.
    denom = aten.div.Scalar(aten.sqrt.default(exp_avg_sq), s["bias_correction2_sqrt"])
    aten.add_.Scalar(denom, s["eps"])
    if upd.kind == "adamw":
        # torch decays the parameter first (param.mul_(1 - lr * weight_decay),
        # even by a factor of 1); nothing between reads it, so the decay
        # goes right before the step, next to the other write of the
        # parameter. It reads nothing the step made: sched/dependencies.cc
        # keeps it after the backward pass in every schedule.
        aten.mul_.Scalar(param, s["decay_factor"])
    aten.addcdiv_.default(param, exp_avg, denom, value=s["neg_step_size"])


def torch_optim_step(updates: Dict[str, ParamUpdate], start: Dict[str, torch.Tensor],
                     grads: Dict[str, Optional[torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """torch.optim.SGD / Adam / AdamW (foreach=False) stepping copies of the starting values: the reference."""
    out: Dict[str, torch.Tensor] = {}
    for pname, upd in updates.items():
        grad = grads.get(pname)
        if grad is None:
            continue  # torch.optim skips parameters without a gradient
        p = start[pname].clone()
        p.grad = grad.clone()
        opt = CLASSES[upd.kind]([p], foreach=False, **upd.hyper)
        given = {k: v.clone() for k, v in upd.state.items() if v is not None}
        if given:
            opt.state[p] = given
        opt.step()
        out[pname] = p.detach()
        for key in upd.state:
            out[f"{pname}.{key}"] = opt.state[p][key]
    return out


def clip_gradients(grads: List[Optional[torch.Tensor]], max_norm: float) -> List[Optional[torch.Tensor]]:
    """The gradients scaled as torch.nn.utils.clip_grad_norm_(params, max_norm)
    scales them (the L2 norm of all of them together at most max_norm), with
    its ops in its order, so a step that clips equals eager's bit for bit: the
    norm of each, the norm of those norms, max_norm / (norm + 1e-6) clamped at
    1, each gradient times that. Out of place; None stays None."""
    present = [g for g in grads if g is not None]
    if not present:
        return list(grads)
    norms = [torch.linalg.vector_norm(g.detach(), 2.0) for g in present]
    total = torch.linalg.vector_norm(torch.stack([n.to(present[0].device) for n in norms]), 2.0)
    coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
    return [None if g is None else g * coef.to(g.device) for g in grads]
