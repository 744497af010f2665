"""Runs a memfit graph for real with PyTorch's ATen operators.

Every op of the graph is ``torch.ops.aten.<packet>.<overload>``. Its inputs
are the ATen schema's tensor arguments in order, and every other argument is
an attribute keyed by its schema name (memfit's IR convention), so binding is
done from ``op._schema.arguments``:

  - tensor arguments take the op's inputs in order; an optional tensor
    argument is absent when its attribute is None, or when the inputs left are
    only enough for the required tensor arguments after it (the registry's
    rule); a tensor-list argument (``aten.cat``'s ``tensors``) takes all
    remaining inputs;
  - other arguments come from the attributes by name (memfit dtype names such
    as ``f32`` become torch dtypes, ``contiguous_format`` a memory format,
    0/1 lists become bool lists); absent ones keep their schema default;
  - results: a tuple is matched to the op's outputs in order; for ops with an
    ``output_mask`` attribute (convolution_backward, native_layer_norm_backward,
    native_batch_norm_backward) the graph lists only the outputs whose mask
    entry is true, so None entries are dropped first.

Ops run in program order. In-place ops (``aten.add_``) mutate their input, so
an optimizer update really changes the parameter tensors passed in. A tensor
is dropped after its last use unless it is a graph output (or keep_all is set),
so torch's allocator sees the graph's real lifetimes.

Source tensors (parameters, buffers, inputs, optimizer states) are taken from
``inputs`` by name, or generated deterministically from ``seed`` and the
tensor's name: integer inputs are drawn in the range their consumer accepts
(embedding rows, nll_loss classes), BatchNorm running variances are positive,
Adam's second moments non-negative.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from .graph import SOURCE_ROLES, Error, Graph, Op, load

DTYPES: Dict[str, torch.dtype] = {
    "f32": torch.float32,
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "f64": torch.float64,
    "i64": torch.int64,
    "i32": torch.int32,
    "i16": torch.int16,
    "i8": torch.int8,
    "u8": torch.uint8,
    "bool": torch.bool,
}
DTYPE_NAMES: Dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}
FLOATING = ("f32", "f16", "bf16", "f64")

MEMORY_FORMATS: Dict[str, torch.memory_format] = {
    "contiguous_format": torch.contiguous_format,
    "preserve_format": torch.preserve_format,
    "channels_last": torch.channels_last,
    "channels_last_3d": torch.channels_last_3d,
}
MEMORY_FORMAT_NAMES = {v: k for k, v in MEMORY_FORMATS.items()}

LAYOUTS = {"strided": torch.strided}


def resolve_overload(op: Op):
    """torch.ops.aten.<packet>.<overload> for `op`, or memfit.Error."""
    namespace, _, packet = op.type.partition(".")
    if not packet:
        raise Error(f"op '{op.name}': type '{op.type}' is not of the form 'aten.<name>'")
    try:
        ns = getattr(torch.ops, namespace)
        pkt = getattr(ns, packet)
        return getattr(pkt, op.overload or "default")
    except (AttributeError, RuntimeError):
        raise Error(f"op '{op.name}': unknown operator {op.qualified_type} (no torch.ops.{op.type}.{op.overload or 'default'})") from None


def _is_tensor_type(t: str) -> bool:
    return t in ("Tensor", "Optional[Tensor]")


def _is_tensor_list_type(t: str) -> bool:
    return t in ("List[Tensor]", "List[Optional[Tensor]]")


@dataclass
class Binding:
    """How one op's inputs and attributes map onto its ATen schema."""

    overload: Any
    # (schema argument name, input positions) for tensor arguments; one
    # position for a tensor, several for a list, none for an absent optional.
    tensor_args: List[Tuple[str, List[int]]]
    # Non-tensor arguments taken from attributes, by name (raw attr values).
    attr_args: Dict[str, Any]
    # Non-tensor schema arguments: name -> type string.
    arg_types: Dict[str, str]
    # Tensor?[] arguments with None entries: name -> 0/1 per entry (the
    # attribute of the same name; x[:, idx] is index(x, [None, idx])).
    list_entries: Dict[str, List[int]] = None


def bind(op: Op) -> Binding:
    overload = resolve_overload(op)
    args = overload._schema.arguments
    tensor_specs = [(a.name, str(a.type)) for a in args if _is_tensor_type(str(a.type)) or _is_tensor_list_type(str(a.type))]
    n = len(op.inputs)
    required_after = [0] * (len(tensor_specs) + 1)
    for k in range(len(tensor_specs) - 1, -1, -1):
        required_after[k] = required_after[k + 1] + (tensor_specs[k][1] == "Tensor")
    tensor_args: List[Tuple[str, List[int]]] = []
    nxt = 0
    for k, (name, typ) in enumerate(tensor_specs):
        if _is_tensor_list_type(typ):
            # Every input left but those the required tensors after it need
            # (index_put(self, indices, values)).
            take = max(n - nxt - required_after[k + 1], 0)
            tensor_args.append((name, list(range(nxt, nxt + take))))
            nxt += take
            continue
        if typ == "Optional[Tensor]":
            if name in op.attrs and op.attrs[name] is None:
                tensor_args.append((name, []))
                continue
            if n - min(nxt, n) <= required_after[k + 1]:
                tensor_args.append((name, []))
                continue
        if nxt >= n:
            if typ == "Tensor":
                raise Error(f"op '{op.name}' ({op.qualified_type}): missing tensor argument '{name}' "
                            f"(the op has {n} inputs)")
            tensor_args.append((name, []))
            continue
        tensor_args.append((name, [nxt]))
        nxt += 1
    if nxt < n:
        raise Error(f"op '{op.name}' ({op.qualified_type}): {n} inputs but the ATen schema takes {nxt} tensors")
    arg_types = {a.name: str(a.type) for a in args if (a.name, str(a.type)) not in tensor_specs}
    typ_of = dict(tensor_specs)
    attr_args = {}
    list_entries: Dict[str, List[int]] = {}
    for key, value in op.attrs.items():
        if key in arg_types:
            attr_args[key] = value
        elif any(key == name for name, _ in tensor_specs):
            if typ_of.get(key) == "List[Optional[Tensor]]" and isinstance(value, list):
                # Which entries of a Tensor?[] list are tensors (1) or None (0).
                present = dict(tensor_args)[key]
                if any(v not in (0, 1) for v in value) or sum(value) != len(present):
                    raise Error(f"op '{op.name}' ({op.qualified_type}): attribute '{key}' must be a 0/1 list with "
                                f"one 1 per tensor of '{key}' ({len(present)}), got {value}")
                list_entries[key] = list(value)
            elif value is not None:
                raise Error(f"op '{op.name}' ({op.qualified_type}): attribute '{key}' names a tensor argument; "
                            f"only None is allowed")
        else:
            raise Error(f"op '{op.name}' ({op.qualified_type}): attribute '{key}' is not an argument of "
                        f"{overload._schema.name}.{overload._overloadname}")
    return Binding(overload, tensor_args, attr_args, arg_types, list_entries)


def _convert_attr(name: str, typ: str, value: Any, float_override: Optional[torch.dtype], device) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        if value in DTYPES:
            d = DTYPES[value]
            if float_override is not None and value in FLOATING:
                d = float_override
            return d
        if value in MEMORY_FORMATS:
            return MEMORY_FORMATS[value]
        if value in LAYOUTS and "layout" in name:
            return LAYOUTS[value]
        if name == "device":
            return torch.device(device) if device is not None else torch.device(value)
        return value
    if "bool" in typ and isinstance(value, list):
        return [bool(v) for v in value]
    if typ in ("bool", "Optional[bool]") and isinstance(value, int):
        return bool(value)
    if typ in ("float", "Optional[float]") and isinstance(value, int):
        return float(value)
    return value


# ---- source values ---------------------------------------------------------


def _generator(seed: int, name: str) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
    return g


# View-like ops through which an index tensor keeps its meaning.
_PASS_THROUGH = {"aten.view", "aten._unsafe_view", "aten.reshape", "aten.unsqueeze", "aten.squeeze", "aten.expand",
                 "aten.alias", "aten.detach", "aten.clone", "aten.t", "aten.permute", "aten.transpose", "aten.slice",
                 "aten.select", "aten._to_copy"}


class _Context:
    """Consumers of every tensor, and schema bindings (computed once)."""

    def __init__(self, g: Graph):
        self.g = g
        self.consumers: List[List[int]] = [[] for _ in g.tensors]
        for op in g.ops:
            for tid in set(op.inputs):
                self.consumers[tid].append(op.id)
        self._bindings: Dict[int, Binding] = {}

    def binding(self, op: Op) -> Binding:
        b = self._bindings.get(op.id)
        if b is None:
            b = self._bindings[op.id] = bind(op)
        return b

    def arg_name(self, op: Op, tid: int) -> Optional[str]:
        for name, positions in self.binding(op).tensor_args:
            if any(op.inputs[p] == tid for p in positions):
                return name
        return None

    def index_range(self, tid: int, depth: int = 0) -> Optional[int]:
        """Exclusive upper bound for an integer tensor from its consumers."""
        g = self.g
        for oid in self.consumers[tid]:
            op = g.ops[oid]
            try:
                arg = self.arg_name(op, tid)
            except Error:
                continue
            shape = lambda name: g.tensors[op.inputs[dict(self.binding(op).tensor_args)[name][0]]].shape  # noqa: E731
            if op.type == "aten.embedding" and arg == "indices":
                return shape("weight")[0]
            if op.type in ("aten.nll_loss_forward", "aten.nll_loss2d_forward", "aten.nll_loss") and arg == "target":
                s = shape("self")
                return s[1] if len(s) >= 2 else s[0]
            if op.type in ("aten.cross_entropy_loss",) and arg == "target":
                s = shape("self")
                return s[1] if len(s) >= 2 else s[0]
            if op.type in ("aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_") \
                    and arg == "indices":
                b = self.binding(op)
                positions = dict(b.tensor_args)["indices"]
                entries = (b.list_entries or {}).get("indices") or [1] * len(positions)
                k = next(i for i, p in enumerate(positions) if op.inputs[p] == tid)
                dim = [e for e, present in enumerate(entries) if present][k]
                s = shape("self")
                if dim < len(s):
                    return s[dim]
            if op.type in ("aten.index_select", "aten.gather") and arg == "index":
                dim = op.attrs.get("dim", 0)
                return shape("self")[dim]
            if op.type in _PASS_THROUGH and depth < 8:
                for out in op.outputs:
                    r = self.index_range(out, depth + 1)
                    if r is not None:
                        return r
        return None


def make_source(g: Graph, tid: int, seed: int = 0, dtype: Optional[torch.dtype] = None, device="cpu",
                _ctx: Optional[_Context] = None) -> torch.Tensor:
    """A deterministic value for source tensor `tid` (see the module docstring)."""
    t = g.tensors[tid]
    ctx = _ctx or _Context(g)
    gen = _generator(seed, t.name)
    shape = list(t.shape)
    declared = DTYPES[t.dtype]
    is_float = t.dtype in FLOATING
    target = dtype if (dtype is not None and is_float) else declared
    if t.dtype == "bool":
        value = torch.rand(shape, generator=gen) < 0.5
    elif not is_float:
        high = ctx.index_range(tid) or 2
        value = torch.randint(0, max(high, 1), shape, generator=gen, dtype=declared)
    else:
        name = t.name.rsplit(".", 1)[-1]
        if t.role == "buffer":
            if "var" in name:
                value = torch.rand(shape, generator=gen, dtype=torch.float32) + 0.5
            else:
                value = torch.randn(shape, generator=gen, dtype=torch.float32) * 0.1
        elif t.role == "optimizer_state":
            if name.endswith("exp_avg_sq"):
                value = torch.rand(shape, generator=gen, dtype=torch.float32) * 1e-3
            else:
                value = torch.randn(shape, generator=gen, dtype=torch.float32) * 1e-2
        elif t.role == "parameter":
            if len(shape) <= 1:
                # Norm scales around 1, biases small.
                base = 1.0 if name in ("weight", "gamma", "scale") else 0.0
                value = base + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float32)
            else:
                fan_in = 1
                for d in shape[1:]:
                    fan_in *= d
                value = torch.randn(shape, generator=gen, dtype=torch.float32) / max(fan_in, 1) ** 0.5
        else:
            value = torch.randn(shape, generator=gen, dtype=torch.float32)
    return value.to(dtype=target, device=device)


def make_sources(graph, seed: int = 0, dtype: Optional[torch.dtype] = None, device="cpu",
                 roles: Iterable[str] = SOURCE_ROLES) -> Dict[str, torch.Tensor]:
    """Deterministic values for every source tensor of `graph` with a role in `roles`, by name."""
    g = load(graph)
    ctx = _Context(g)
    roles = set(roles)
    return {t.name: make_source(g, t.id, seed, dtype, device, ctx) for t in g.tensors
            if t.producer is None and t.alias_of is None and t.role in roles}


# ---- execution ---------------------------------------------------------------


def _expected_dtype(declared: str, override: Optional[torch.dtype]) -> torch.dtype:
    if override is not None and declared in FLOATING:
        return override
    return DTYPES[declared]


def tensor_nbytes(g: Graph, tid: int, dtype: Optional[torch.dtype] = None) -> int:
    """Bytes of tensor `tid` of `g` as the executor holds it (floating tensors in `dtype` when given)."""
    t = g.tensors[tid]
    return torch.empty((), dtype=_expected_dtype(t.dtype, dtype)).element_size() * math.prod(t.shape)


def run(
    graph,
    inputs: Optional[Mapping[str, torch.Tensor]] = None,
    *,
    seed: int = 0,
    dtype: Optional[torch.dtype] = None,
    device: Optional[str] = None,
    phases: Optional[Sequence[str]] = None,
    keep_all: bool = False,
    generate: bool = True,
    check: bool = True,
    grad_phases: Sequence[str] = ("forward",),
    arena: bool = False,
) -> Dict[str, torch.Tensor]:
    """Executes `graph` (path, JSON dict or Graph) and returns tensors by name.

    inputs: tensors by name. Usually sources (parameters, buffers, inputs,
        optimizer states), but any tensor may be given: an op whose outputs
        are all given is skipped (this is how a backward pass runs on a
        recorded forward). In-place ops mutate the given tensors.
    seed: seeds the generated sources and torch's RNG (dropout).
    dtype: run every floating-point tensor in this dtype (torch.float64 for
        gradient checks); given inputs are converted (then not mutated).
    device: where generated sources live ("cpu" by default; given inputs stay
        where they are).
    phases: run only the ops of these phases ("forward", "backward",
        "optimizer"); all by default.
    keep_all: return every tensor computed, not only the graph's outputs.
    generate: create missing sources; when False a missing source is an error.
    check: compare each result's shape and dtype with the graph's declaration.
    grad_phases: when an input requires grad, autograd records only the ops of
        these phases (so a forward can be differentiated by torch.autograd
        while memfit's own backward ops run without recording).

    The result holds the graph outputs by tensor name (the loss,
    "<param>.grad", updated parameters), and for in-place results also the
    name of the source whose storage they updated ("fc1.weight").

    A plan (PLAN.json path or dict, "format": "memfit.plan") runs its steps
    in order (memfit.plan.execute: compute, recompute, swap_out, swap_in,
    free); arena=True places its storages at their offsets in one byte
    buffer. phases, keep_all and grad_phases do not apply to plans.
    """
    from .plan import execute, is_plan
    if is_plan(graph):
        if phases is not None or keep_all:
            raise Error("phases= and keep_all= do not apply to a plan; its steps say what runs and what is freed")
        return execute(graph, inputs, seed=seed, dtype=dtype, device=device, arena=arena, generate=generate,
                       check=check, track_memory=False).outputs
    if arena:
        raise Error("arena=True needs a plan with buffers (memfit plan G.json -o PLAN.json)")
    g = load(graph)
    ctx = _Context(g)
    dev = device or "cpu"
    given = dict(inputs or {})
    unknown = [name for name in given if name not in {t.name for t in g.tensors}]
    if unknown:
        raise Error(f"graph '{g.name}' has no tensor named {', '.join(repr(n) for n in sorted(unknown))}")
    by_name = {t.name: t for t in g.tensors}
    env: Dict[int, torch.Tensor] = {}
    for name, value in given.items():
        t = by_name[name]
        if not isinstance(value, torch.Tensor):
            raise Error(f"input '{name}' is a {type(value).__name__}, not a torch.Tensor")
        if list(value.shape) != list(t.shape):
            raise Error(f"input '{name}' has shape {list(value.shape)}, the graph declares {list(t.shape)}")
        if dtype is not None and t.dtype in FLOATING and value.dtype != dtype:
            requires = value.requires_grad
            value = value.detach().to(dtype).requires_grad_(requires)
        env[t.id] = value

    selected = [op for op in g.ops if phases is None or op.phase in phases]
    keep = set(g.outputs)
    last_use: Dict[int, int] = {}
    for step, op in enumerate(selected):
        for tid in op.inputs:
            last_use[tid] = step

    if seed is not None:
        torch.manual_seed(seed)
    any_grad = any(v.requires_grad for v in env.values())

    def fetch(op: Op, tid: int) -> torch.Tensor:
        if tid not in env:
            t = g.tensors[tid]
            if t.producer is not None and (phases is None or g.ops[t.producer].phase in phases):
                raise Error(f"op '{op.name}' ({op.qualified_type}): input '{t.name}' was freed or not computed")
            if t.producer is not None:
                raise Error(f"op '{op.name}' ({op.qualified_type}): input '{t.name}' is produced by op "
                            f"'{g.ops[t.producer].name}' in phase '{g.ops[t.producer].phase}', which is not run; "
                            f"pass it in inputs")
            if t.alias_of is not None:
                raise Error(f"op '{op.name}': source '{t.name}' aliases another tensor; pass it in inputs")
            if not generate:
                raise Error(f"missing input '{t.name}' ({t.role} {t.dtype}{list(t.shape)}) for op '{op.name}'")
            env[tid] = make_source(g, tid, seed or 0, dtype, dev, ctx)
        return env[tid]

    for step, op in enumerate(selected):
        if op.outputs and all(o in env for o in op.outputs):
            continue  # results given by the caller
        results = invoke(ctx, op, lambda tid: fetch(op, tid), dtype=dtype, device=device,
                         grad=any_grad and op.phase in grad_phases, check=check)
        for tid, value in zip(op.outputs, results):
            env[tid] = value
        if not keep_all:
            for tid in set(op.inputs):
                if last_use.get(tid) == step and tid not in keep:
                    env.pop(tid, None)
            for tid in op.outputs:
                if tid not in last_use and tid not in keep:
                    env.pop(tid, None)

    out: Dict[str, torch.Tensor] = {}
    if keep_all:
        for tid, value in env.items():
            out[g.tensors[tid].name] = value
    for tid in g.outputs:
        if tid not in env:
            if phases is not None:
                continue
            raise Error(f"graph output '{g.tensors[tid].name}' was not computed")
        out[g.tensors[tid].name] = env[tid]
        root = g.storage_root(tid)
        if root != tid and g.tensors[root].producer is None:
            out[g.tensors[root].name] = env[tid]
    return out



def op_kwargs(ctx: "_Context", op: Op, fetch, dtype: Optional[torch.dtype] = None,
              device: Optional[str] = None) -> Tuple[Binding, Dict[str, Any]]:
    """The binding of `op` and its keyword arguments; fetch(tid) gives an input tensor."""
    b = ctx.binding(op)
    kwargs: Dict[str, Any] = {}
    for name, positions in b.tensor_args:
        typ = next(str(a.type) for a in b.overload._schema.arguments if a.name == name)
        if _is_tensor_list_type(typ):
            values = iter([fetch(op.inputs[p]) for p in positions])
            entries = (b.list_entries or {}).get(name)
            kwargs[name] = [next(values) if e else None for e in entries] if entries else list(values)
        elif positions:
            kwargs[name] = fetch(op.inputs[positions[0]])
        else:
            kwargs[name] = None
    for name, value in b.attr_args.items():
        kwargs[name] = _convert_attr(name, b.arg_types[name], value, dtype, device)
    # Factories without a dtype attribute would make float32.
    if dtype is not None and "dtype" in b.arg_types and b.attr_args.get("dtype") is None and op.outputs:
        if ctx.g.tensors[op.outputs[0]].dtype in FLOATING and not any(positions for _, positions in b.tensor_args):
            kwargs["dtype"] = dtype
    if device is not None and "device" in b.arg_types and "device" not in b.attr_args:
        if not any(positions for _, positions in b.tensor_args):
            kwargs["device"] = torch.device(device)
    return b, kwargs


def call_overload(op: Op, overload, kwargs: Dict[str, Any], grad: bool = False):
    """Calls `overload` with `kwargs` (leading schema arguments passed positionally); memfit.Error on failure."""
    kwargs = dict(kwargs)
    with torch.set_grad_enabled(grad):
        try:
            return overload(*_positional_for(overload, kwargs), **kwargs)
        except Exception as e:  # torch raises RuntimeError, TypeError, IndexError...
            shapes = {k: (list(v.shape) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
            raise Error(f"op '{op.name}' ({op.qualified_type}) failed: {e}\n  arguments: {shapes}") from None


def check_results(g: Graph, op: Op, results: Sequence[torch.Tensor], dtype: Optional[torch.dtype] = None) -> None:
    """memfit.Error when a result's shape or dtype differs from the graph's declaration."""
    for tid, value in zip(op.outputs, results):
        t = g.tensors[tid]
        if list(value.shape) != list(t.shape):
            raise Error(f"op '{op.name}' ({op.qualified_type}): output '{t.name}' has shape "
                        f"{list(value.shape)}, the graph declares {list(t.shape)}")
        want = _expected_dtype(t.dtype, dtype)
        if value.dtype != want:
            raise Error(f"op '{op.name}' ({op.qualified_type}): output '{t.name}' has dtype "
                        f"{DTYPE_NAMES.get(value.dtype, value.dtype)}, the graph declares "
                        f"{DTYPE_NAMES.get(want, want)}")


def invoke(ctx: "_Context", op: Op, fetch, *, dtype: Optional[torch.dtype] = None, device: Optional[str] = None,
           grad: bool = False, check: bool = True) -> List[torch.Tensor]:
    """Runs `op` once and returns its results, one per graph output."""
    b, kwargs = op_kwargs(ctx, op, fetch, dtype, device)
    results = _results(op, call_overload(op, b.overload, kwargs, grad))
    if check:
        check_results(ctx.g, op, results, dtype)
    return results


def _positional(b: Binding, kwargs: Dict[str, Any]) -> List[Any]:
    return _positional_for(b.overload, kwargs)


def _positional_for(overload, kwargs: Dict[str, Any]) -> List[Any]:
    """Moves leading schema arguments from kwargs to a positional list (the
    OpOverload's own `self` parameter would clash with ATen's `self`)."""
    args = []
    for a in overload._schema.arguments:
        if a.kwarg_only or a.name not in kwargs:
            break
        args.append(kwargs.pop(a.name))
    return args


def _results(op: Op, result: Any) -> List[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        results = [result]
    elif isinstance(result, (tuple, list)):
        results = list(result)
        if "output_mask" in op.attrs:
            results = [r for r, m in zip(results, op.attrs["output_mask"]) if m]
    else:
        raise Error(f"op '{op.name}' ({op.qualified_type}) returned {type(result).__name__}, not tensors")
    if len(results) < len(op.outputs):
        raise Error(f"op '{op.name}' ({op.qualified_type}) returned {len(results)} tensors, "
                    f"the graph declares {len(op.outputs)} outputs")
    # A graph may leave out trailing outputs (never inner ones): extra results are dropped.
    for r in results[: len(op.outputs)]:
        if not isinstance(r, torch.Tensor):
            raise Error(f"op '{op.name}' ({op.qualified_type}) returned {type(r).__name__} where the graph "
                        f"declares a tensor output")
    return results[: len(op.outputs)]
