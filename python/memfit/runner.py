"""Runs one op of a memfit graph with PyTorch's ATen operators: the op runner that
memfit.run (executor), plan execution (memfit.plan) and live DTR (memfit.dtr)
share, so that binding, checking, RNG replay and undoing side effects follow
one set of rules.

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

Rerunning an op (a plan's ``recompute`` step, a DTR rematerialization) follows
the op flags of the graph (memfit.graph.OpFlags, written by the C++ registry):

  - a ``random`` op replays the RNG state of its first run (torch's CPU
    generator, and the CUDA one when running on CUDA), and the generator is
    left where it was, so the stream in program order is eager's and a
    recomputed mask equals the original;
  - inputs the op ``mutates`` without an output of their own (BatchNorm's
    running statistics) are saved before and restored after the rerun, so
    they are updated once.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch

from .graph import Error, Graph, Op, OpFlags
from .native import ensure_op_flags

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

# Layouts by the name a graph gives them ("strided", "sparse_coo", ...; graphs of
# earlier captures wrote "torch.sparse_coo").
LAYOUTS = {name: getattr(torch, name) for name in ("strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr",
                                                     "sparse_bsc", "_mkldnn") if isinstance(getattr(torch, name, None),
                                                                                             torch.layout)}
LAYOUTS.update({f"torch.{name}": layout for name, layout in list(LAYOUTS.items())})

Fetch = Callable[[int], torch.Tensor]


def resolve_overload(op: Op):
    """torch.ops.aten.<packet>.<overload> for `op`, or memfit.Error."""
    namespace, _, packet = op.type.partition(".")
    if not packet:
        raise Error(f"op '{op.name}': type '{op.type}' is not of the form 'aten.<name>'")
    for attempt in range(2):
        try:
            ns = getattr(torch.ops, namespace)
            pkt = getattr(ns, packet)
            return getattr(pkt, op.overload or "default")
        except (AttributeError, RuntimeError):
            # A library's ops (torchvision.roi_align) are registered when it is imported:
            # a graph captured in one process may run in another that has not imported it.
            if attempt or namespace == "aten" or not _import_op_library(namespace):
                break
    raise Error(f"op '{op.name}': unknown operator {op.qualified_type} (no torch.ops.{op.type}."
                f"{op.overload or 'default'})")


def _import_op_library(namespace: str) -> bool:
    """Imports the Python package named like an op namespace, if there is one."""
    import importlib

    try:
        importlib.import_module(namespace)
    except ImportError:
        return False
    return True


def is_tensor_type(t: str) -> bool:
    return t in ("Tensor", "Optional[Tensor]")


def is_tensor_list_type(t: str) -> bool:
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
    tensor_specs = [(a.name, str(a.type)) for a in args if is_tensor_type(str(a.type)) or is_tensor_list_type(str(a.type))]
    n = len(op.inputs)
    required_after = [0] * (len(tensor_specs) + 1)
    for k in range(len(tensor_specs) - 1, -1, -1):
        required_after[k] = required_after[k + 1] + (tensor_specs[k][1] == "Tensor")
    tensor_args: List[Tuple[str, List[int]]] = []
    nxt = 0
    for k, (name, typ) in enumerate(tensor_specs):
        if is_tensor_list_type(typ):
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


class Context:
    """Per graph: the consumers of every tensor, and schema bindings (computed once)."""

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


# ---- sizes ----------------------------------------------------------------------


def expected_dtype(declared: str, override: Optional[torch.dtype]) -> torch.dtype:
    if override is not None and declared in FLOATING:
        return override
    return DTYPES[declared]


def tensor_nbytes(g: Graph, tid: int, dtype: Optional[torch.dtype] = None) -> int:
    """Bytes of tensor `tid` of `g` as the runner holds it (floating tensors in `dtype` when given)."""
    t = g.tensors[tid]
    return torch.empty((), dtype=expected_dtype(t.dtype, dtype)).element_size() * math.prod(t.shape)


def storage_key(t: torch.Tensor) -> Tuple[int, int]:
    """(data pointer, bytes) of the torch storage behind `t`."""
    s = t.storage()
    return s.data_ptr(), s.nbytes()


# ---- calling one op --------------------------------------------------------------


# Ops whose storage_offset counts from the start of their input's storage.
_STORAGE_OFFSET_OPS = {"aten.as_strided", "aten.as_strided_", "aten.as_strided_scatter"}


def _storage_start(g, tid: int, value: torch.Tensor) -> int:
    """Where the storage the capture saw starts in `value`'s storage (elements).
    A recorded storage_offset counts from the start of the tensor's own
    allocation; here that allocation may sit inside a larger one (a plan's
    arena places every storage at its byte offset in one buffer), and
    as_strided(x, size, stride, offset) read at the capture's offset from there
    would read another tensor's bytes."""
    return value.storage_offset() - g.tensors[tid].storage_offset


def op_kwargs(ctx: Context, op: Op, fetch: Fetch, dtype: Optional[torch.dtype] = None,
              device: Optional[str] = None) -> Tuple[Binding, Dict[str, Any]]:
    """The binding of `op` and its keyword arguments; fetch(tid) gives an input tensor."""
    b = ctx.binding(op)
    kwargs: Dict[str, Any] = {}
    for name, positions in b.tensor_args:
        typ = next(str(a.type) for a in b.overload._schema.arguments if a.name == name)
        if is_tensor_list_type(typ):
            values = iter([fetch(op.inputs[p]) for p in positions])
            entries = (b.list_entries or {}).get(name)
            kwargs[name] = [next(values) if e else None for e in entries] if entries else list(values)
        elif positions:
            kwargs[name] = fetch(op.inputs[positions[0]])
        else:
            kwargs[name] = None
    for name, value in b.attr_args.items():
        kwargs[name] = _convert_attr(name, b.arg_types[name], value, dtype, device)
    if op.type in _STORAGE_OFFSET_OPS and op.inputs and isinstance(kwargs.get("self"), torch.Tensor):
        start = _storage_start(ctx.g, op.inputs[0], kwargs["self"])
        kwargs["storage_offset"] = (kwargs.get("storage_offset") or 0) + start
    # Factories without a dtype attribute would make float32.
    if dtype is not None and "dtype" in b.arg_types and b.attr_args.get("dtype") is None and op.outputs:
        if ctx.g.tensors[op.outputs[0]].dtype in FLOATING and not any(positions for _, positions in b.tensor_args):
            kwargs["dtype"] = dtype
    if device is not None and "device" in b.arg_types and "device" not in b.attr_args:
        if not any(positions for _, positions in b.tensor_args):
            kwargs["device"] = torch.device(device)
    return b, kwargs


def positional_for(overload, kwargs: Dict[str, Any]) -> List[Any]:
    """Moves leading schema arguments from kwargs to a positional list (the
    OpOverload's own `self` parameter would clash with ATen's `self`)."""
    args = []
    for a in overload._schema.arguments:
        if a.kwarg_only or a.name not in kwargs:
            break
        args.append(kwargs.pop(a.name))
    return args


def _gelu_backward_one_layout(grad_output: torch.Tensor, self: torch.Tensor, *, approximate: str = "none"):
    # torch 1.13's CPU gelu_backward (float32, approximate "none") reads the wrong
    # elements when its two inputs are laid out differently -- a gradient that
    # comes back through a transpose, as GELU before a batch_first GRU gets it --
    # and returns values of memory it does not own (eager autograd too: measured
    # 2.2 off, or 1e34, against the same call on contiguous inputs). Given one
    # layout, it is right; float64, the tanh approximation and every other
    # activation's backward were right in the same sweep.
    if grad_output.stride() != self.stride():
        grad_output, self = grad_output.contiguous(), self.contiguous()
    return torch.ops.aten.gelu_backward.default(grad_output, self, approximate=approximate)


_KERNEL_FIXES: Dict[Any, Callable] = {torch.ops.aten.gelu_backward.default: _gelu_backward_one_layout}


def kernel(overload) -> Callable:
    """What runs `overload` (an ATen OpOverload): its C++ function, or a wrapper
    around a kernel this torch computes wrongly for some inputs (same arguments)."""
    return _KERNEL_FIXES.get(overload) or getattr(overload, "_op", overload)


def call_overload(op: Op, overload, kwargs: Dict[str, Any], grad: bool = False):
    """Calls `overload` with `kwargs` (leading schema arguments passed positionally); memfit.Error on failure."""
    kwargs = dict(kwargs)
    with torch.set_grad_enabled(grad):
        try:
            return kernel(overload)(*positional_for(overload, kwargs), **kwargs)
        except Exception as e:  # torch raises RuntimeError, TypeError, IndexError...
            shapes = {k: (list(v.shape) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
            raise Error(f"op '{op.name}' ({op.qualified_type}) failed: {e}\n  arguments: {shapes}") from None


def results_of(op: Op, result: Any) -> List[torch.Tensor]:
    """The op's results, one per graph output (output_mask's None entries and trailing extras dropped)."""
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


def check_results(g: Graph, op: Op, results: Sequence[torch.Tensor], dtype: Optional[torch.dtype] = None) -> None:
    """memfit.Error when a result's shape or dtype differs from the graph's declaration."""
    for tid, value in zip(op.outputs, results):
        t = g.tensors[tid]
        if list(value.shape) != list(t.shape):
            raise Error(f"op '{op.name}' ({op.qualified_type}): output '{t.name}' has shape "
                        f"{list(value.shape)}, the graph declares {list(t.shape)}")
        want = expected_dtype(t.dtype, dtype)
        if value.dtype != want:
            raise Error(f"op '{op.name}' ({op.qualified_type}): output '{t.name}' has dtype "
                        f"{DTYPE_NAMES.get(value.dtype, value.dtype)}, the graph declares "
                        f"{DTYPE_NAMES.get(want, want)}")


def invoke(ctx: Context, op: Op, fetch: Fetch, *, dtype: Optional[torch.dtype] = None, device: Optional[str] = None,
           grad: bool = False, check: bool = True) -> List[torch.Tensor]:
    """Runs `op` once and returns its results, one per graph output."""
    b, kwargs = op_kwargs(ctx, op, fetch, dtype, device)
    results = results_of(op, call_overload(op, b.overload, kwargs, grad))
    if check:
        check_results(ctx.g, op, results, dtype)
    return results


_OUT_VARIANTS: Dict[Tuple[str, str], Any] = {}


def out_variant(op: Op):
    """(the ATen out= overload with the same arguments as `op`'s functional one, its out
    argument names), or None."""
    key = (op.type, op.overload)
    if key in _OUT_VARIANTS:
        return _OUT_VARIANTS[key]
    functional = resolve_overload(op)
    want = [(a.name, str(a.type)) for a in functional._schema.arguments]
    packet = getattr(torch.ops.aten, op.type.partition(".")[2])
    found = None
    for name in packet.overloads():
        ov = getattr(packet, name)
        args = ov._schema.arguments
        outs = [a for a in args if a.kwarg_only and a.alias_info is not None and a.alias_info.is_write]
        rest = [(a.name, str(a.type)) for a in args if not (a.kwarg_only and a.alias_info is not None
                                                            and a.alias_info.is_write)]
        if outs and rest == want and all(str(a.type) == "Tensor" for a in outs):
            found = (ov, [a.name for a in outs])
            break
    _OUT_VARIANTS[key] = found
    return found


# ---- the runner -------------------------------------------------------------------


def op_flags(g: Graph, why: str) -> List[OpFlags]:
    """Every op's flags (from the graph, or from the registry through the native
    module); memfit.Error naming `why` when neither has them."""
    ensure_op_flags(g, why)
    return [op.flags for op in g.ops]


@dataclass
class OpRunner:
    """Runs the ops of one graph: bound from their schemas, results checked against
    the graph, reruns with RNG replay and side effects undone (module docstring).

    dtype: run floating tensors in this dtype; device: where factories create
    tensors (and whose RNG a random op replays); check: compare results with the
    graph's declarations."""

    g: Graph
    dtype: Optional[torch.dtype] = None
    device: Optional[str] = None
    check: bool = True
    ctx: Context = None
    # Random ops' RNG state before their first run: (CPU, CUDA or None).
    rng_states: Dict[int, Tuple[torch.Tensor, Optional[torch.Tensor]]] = field(default_factory=dict)
    # Ops that may be rerun (None: any); only their flags are needed.
    rerun_ops: Optional[Set[int]] = None

    def __post_init__(self):
        if self.ctx is None:
            self.ctx = Context(self.g)
        self.cuda = bool(self.device) and torch.device(self.device).type == "cuda"
        self._flags: Optional[List[OpFlags]] = None

    def flags(self, op: Op) -> OpFlags:
        if self._flags is None:
            self._flags = op_flags(self.g, "rerunning ops (recompute steps, DTR)")
        return self._flags[op.id]

    def may_rerun(self, op: Op) -> bool:
        return self.rerun_ops is None or op.id in self.rerun_ops

    def kwargs(self, op: Op, fetch: Fetch) -> Tuple[Binding, Dict[str, Any]]:
        return op_kwargs(self.ctx, op, fetch, self.dtype, self.device)

    def call(self, op: Op, fetch: Fetch, grad: bool = False) -> List[torch.Tensor]:
        """Runs `op` on the inputs `fetch` gives; its results, checked."""
        return invoke(self.ctx, op, fetch, dtype=self.dtype, device=self.device, grad=grad, check=self.check)

    def rng_state(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda else None

    @staticmethod
    def set_rng_state(state: Tuple[torch.Tensor, Optional[torch.Tensor]]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1])

    @contextmanager
    def running(self, op: Op, fetch: Fetch, rerun: bool, where: str = "") -> Iterator[None]:
        """Around one run of `op` (the caller runs it inside): a first run of a random
        op that may be rerun records the RNG state; a rerun replays it and undoes
        the writes to the inputs the op mutates. `where` prefixes errors."""
        if not rerun:
            if self.may_rerun(op) and self.flags(op).random:
                self.rng_states[op.id] = self.rng_state()
            yield
            return
        flags = self.flags(op)
        undo = [(value, value.clone()) for value in (fetch(op.inputs[k]) for k in dict.fromkeys(flags.mutates))]
        saved = None
        if flags.random:
            if op.id not in self.rng_states:
                raise Error(f"{where}recompute of '{op.name}' before its compute")
            saved = self.rng_state()
            self.set_rng_state(self.rng_states[op.id])
        try:
            yield
        finally:
            if saved is not None:
                self.set_rng_state(saved)
            for value, before in undo:
                value.copy_(before)


def take_inputs(g: Graph, inputs, dtype: Optional[torch.dtype] = None, *, keep_grad: bool = False,
                sources_only: str = "") -> Dict[int, torch.Tensor]:
    """The caller's tensors by tensor id, checked against the graph (names, types,
    shapes); floating ones converted to `dtype` when given (then no longer the
    caller's tensors; `keep_grad` keeps requires_grad). With `sources_only`, a
    tensor that is not a source is an error ending with that text."""
    by_name = {t.name: t for t in g.tensors}
    unknown = sorted(n for n in (inputs or {}) if n not in by_name)
    if unknown:
        raise Error(f"graph '{g.name}' has no tensor named {', '.join(repr(n) for n in unknown)}")
    env: Dict[int, torch.Tensor] = {}
    for name, value in (inputs or {}).items():
        t = by_name[name]
        if sources_only and (t.producer is not None or t.alias_of is not None):
            raise Error(f"input '{name}' is not a source of graph '{g.name}': {sources_only}")
        if not isinstance(value, torch.Tensor):
            raise Error(f"input '{name}' is a {type(value).__name__}, not a torch.Tensor")
        if list(value.shape) != list(t.shape):
            raise Error(f"input '{name}' has shape {list(value.shape)}, the graph declares {list(t.shape)}")
        if dtype is not None and t.dtype in FLOATING and value.dtype != dtype:
            requires = value.requires_grad
            value = value.detach().to(dtype)
            if keep_grad:
                value.requires_grad_(requires)
        env[t.id] = value
    return env


def outputs_by_name(g: Graph, env: Dict[int, torch.Tensor], missing: str, copy: bool = False,
                    skip_missing: bool = False) -> Dict[str, torch.Tensor]:
    """The graph outputs by tensor name, and for in-place results also the name of the
    source whose storage they updated ("fc1.weight"); `missing` ends the error for an
    output not in env (or it is left out with `skip_missing`); `copy` clones them."""
    out: Dict[str, torch.Tensor] = {}
    for tid in g.outputs:
        if tid not in env:
            if skip_missing:
                continue
            raise Error(f"graph output '{g.tensors[tid].name}' {missing}")
        value = env[tid].clone() if copy else env[tid]
        out[g.tensors[tid].name] = value
        root = g.storage_root(tid)
        if root != tid and g.tensors[root].producer is None:
            out[g.tensors[root].name] = value
    return out
