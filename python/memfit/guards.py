"""Guards: what a captured step assumed about values it read in Python.

A training step's Python may read a tensor's value -- `.item()`,
`bool(t)` (an `if` on a tensor), `int(t)` / a `range()` bound from a tensor,
`.tolist()` -- or call an op whose output shape depends on the data
(`x[mask]`, `nonzero`, `masked_select`, `unique`). make_fx alone refuses
these ("trying to get value out of a tracing tensor"). Capture instead runs
the step on the real example values, lets Python see the value it reads, and
records a guard: the FX node whose tensor was read, how it was read and the
value (or the output shape). The graph is that step's graph, specialized on
those values; it is valid while every guard holds.

    cap = memfit.capture(model, (x, lengths), ...)
    cap.guards                       # [Guard(...)], the input shapes first
    check = cap.check_guards((x2, lengths2))
    if not check.ok:
        print(check.reason)          # "input 'input1' ... shape [4] -> [5]" or
                                     # "`int(t)` at model.py:31 read 7, now 9"

check_guards compares the inputs' shapes and dtypes (always), then, only when
there are value guards, evaluates the part of the captured graph they depend
on (usually a few small ops on the inputs) on the new inputs and the module's
current parameters and buffers, stopping at the first guard that fails. It
never mutates the inputs, parameters or buffers (tensors the guarded ops
write in place are cloned first) and forks the RNG.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
import torch.fx

from .fake_trace import METADATA_INPLACE
from .graph import Error
from .torch_compat import written_args

# Ops whose result is a Python value read from tensor data.
_VALUE_READS = {"item", "_local_scalar_dense", "is_nonzero", "equal", "allclose"}
# Ops whose output shape depends on tensor data (index only with a boolean mask).
_DYNAMIC_SHAPE = {"nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive",
                  "repeat_interleave", "index"}

# Ops whose C++ reads these tensor arguments' data on the host without dispatching
# (a packed sequence's lengths decide its batch sizes, which the recurrent kernels
# then read the same way; CTC's lengths): the trace bakes their values in, so they
# are guarded like a .tolist().
_HOST_READS = {"_pack_padded_sequence": (1,), "ctc_loss": (2, 3), "_ctc_loss": (2, 3)}

# Factories of uninitialized memory.
_UNINITIALIZED = {"empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided"}

_HOW = {"item": "a value read (.item(), int(), float(), bool(), a range() bound)",
        "_local_scalar_dense": "a value read (.item(), int(), float(), bool(), a range() bound)", "is_nonzero": "bool(tensor) (an if on a tensor)",
        "equal": "torch.equal", "allclose": "torch.allclose", "tolist": ".tolist()",
        "numpy": ".numpy()", "host": "an op that reads lengths on the host (pack_padded_sequence, ctc_loss)"}


@dataclass
class Guard:
    """One assumption of a captured step.

    kind: "input" (an input's shape and dtype), "value" (a value Python read
    from a tensor), "shape" (the data-dependent output shape of an op).
    """

    kind: str
    what: str  # for messages: "input 'x'", "`.item()` at model.py:42"
    expected: Any  # (shape, dtype) / the value / the shape
    node: Optional[str] = None  # FX node whose tensor is read (value / shape guards)
    read: Optional[str] = None  # how: "item", "is_nonzero", "tolist", "equal", ... or the op for shape guards
    args: tuple = ()  # non-tensor arguments of the read (allclose's rtol, atol)
    index: Optional[int] = None  # input position (input guards)
    nodes: tuple = ()  # every FX node the read takes (equal / allclose take two)


@dataclass
class GuardCheck:
    ok: bool
    reason: str = ""  # what changed, for the first guard that failed
    guard: Optional[Guard] = None


def _user_frame() -> str:
    """file:line of the innermost frame outside torch and memfit (the user's code)."""
    here = os.path.dirname(os.path.abspath(__file__))
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if not path.startswith(here) and not path.startswith(torch_dir) and "<" not in frame.filename:
            return f"{os.path.basename(path)}:{frame.lineno}"
    return "?"


def _proxy_node(t: torch.Tensor, tracer) -> Optional[str]:
    from torch.fx.experimental.proxy_tensor import get_proxy_slot

    slot = get_proxy_slot(t, tracer, None)
    if slot is None or getattr(slot, "constant", None) is not None:
        return None  # a constant (torch.tensor(...)): its value never changes
    return slot.proxy.node.name


def _traced_node(t) -> Optional[str]:
    """The FX node of `t` under the innermost tracing mode (None outside one,
    for a constant or for a value that is not a tensor): what the Python-level
    reads patched below guard."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    tracer = next((m.tracer for m in reversed(_get_current_dispatch_mode_stack()) if hasattr(m, "tracer")), None)
    return _proxy_node(t, tracer) if tracer is not None and isinstance(t, torch.Tensor) else None


class ValueReads:
    """A dispatch mode, entered inside the traced function, that turns value
    reads into guards (real tracing) or a clear error (fake tracing)."""

    def __init__(self, graph_name: str, fake: bool):
        self.graph_name = graph_name
        self.fake = fake
        self.guards: List[Guard] = []
        # FX node name -> the real tensor an uninitialized-memory factory made
        # (see fill_constants).
        self.empties: Dict[str, torch.Tensor] = {}
        self.pending: Dict[int, Any] = {}  # id(tensor) -> (node, tensor) not yet taken by an op

    # The mode object is made lazily so importing memfit needs no dispatch-mode API.
    def mode(self):
        from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode, \
            _pop_mode_temporarily

        reads = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = func.overloadpacket.__name__
                if any(isinstance(a, torch.Generator) for a in list(args) + list(kwargs.values())):
                    raise Error(f"capturing '{reads.graph_name}': the step draws from a torch.Generator of its own "
                                f"({name} at {_user_frame()}); a captured graph draws from torch's default "
                                f"generator only (memfit.fit runs such a step with graph breaks)")
                if reads.pending:
                    # The first op to take an uninitialized tensor: keep its
                    # content as of now (what C++ may have written into it).
                    for a in list(args) + [x for v in args if isinstance(v, (list, tuple)) for x in v]:
                        if isinstance(a, torch.Tensor) and id(a) in reads.pending:
                            node, _ = reads.pending.pop(id(a))
                            with _pop_mode_temporarily():
                                reads.empties[node] = a.detach().clone()
                if reads.fake and name in METADATA_INPLACE and args and isinstance(args[0], torch.Tensor):
                    # The op reshapes the tensor object its input node's
                    # meta["val"] is: keep that node's value as it is now.
                    reads.snapshot_meta(args[0], _get_current_dispatch_mode(), _pop_mode_temporarily)
                if name in _HOST_READS:
                    reads.host_reads(name, args, _get_current_dispatch_mode(), _pop_mode_temporarily)
                if name in _VALUE_READS:
                    tracer = getattr(_get_current_dispatch_mode(), "tracer", None)
                    tensors = [a for a in args if isinstance(a, torch.Tensor)]
                    nodes = [_proxy_node(t, tracer) if tracer is not None else None for t in tensors]
                    if all(n is None for n in nodes):
                        return func(*args, **kwargs)  # constants: proxy_call folds them
                    reads.check_not_fake(tensors, name)
                    with _pop_mode_temporarily():
                        value = func(*args, **kwargs)
                    reads.add_value(name, nodes, value, tuple(a for a in args if not isinstance(a, torch.Tensor)))
                    return value
                out = func(*args, **kwargs)
                if name in _UNINITIALIZED and isinstance(out, torch.Tensor) and not reads.fake:
                    tracer = getattr(_get_current_dispatch_mode(), "tracer", None)
                    node = _proxy_node(out, tracer) if tracer is not None else None
                    if node is not None:
                        reads.pending[id(out)] = (node, out)
                if name in _DYNAMIC_SHAPE:
                    if name == "index" and not any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                                                   for i in (args[1] if len(args) > 1 else [])):
                        return out
                    tracer = getattr(_get_current_dispatch_mode(), "tracer", None)
                    # unique's values, inverse and counts come as a tuple (torch.unique with
                    # return_inverse or return_counts: _unique2); the values' count is the
                    # data's.
                    first = out[0] if isinstance(out, (tuple, list)) else out
                    traced = tracer is not None and isinstance(first, torch.Tensor)
                    node = _proxy_node(first, tracer) if traced else None
                    if node is not None:
                        reads.guards.append(Guard("shape", f"the output shape of {name} at {_user_frame()}",
                                                  list(first.shape), node=node, read=name))
                return out

        return _Mode()

    def snapshot_meta(self, t: torch.Tensor, proxy_mode, pop_mode) -> None:
        from torch.fx.experimental.proxy_tensor import get_proxy_slot

        tracer = getattr(proxy_mode, "tracer", None)
        slot = get_proxy_slot(t, tracer, None) if tracer is not None else None
        if slot is None:
            return
        node = slot.proxy.node
        with pop_mode():  # not recorded: the fake mode below makes the alias
            node.meta["val"] = t.detach()

    def host_reads(self, name: str, args, proxy_mode, pop_mode) -> None:
        tracer = getattr(proxy_mode, "tracer", None)
        for i in _HOST_READS[name]:
            t = args[i] if i < len(args) else None
            if not isinstance(t, torch.Tensor) or tracer is None:
                continue
            node = _proxy_node(t, tracer)
            if node is None:
                continue  # a constant: its value never changes
            self.check_not_fake([t], "host")
            with pop_mode():
                value = t.tolist()
            self.guards.append(Guard("value", f"`{name}` (its argument {i}, read on the host) at {_user_frame()}",
                                     value, node=node, read="tolist", nodes=(node,)))

    def check_not_fake(self, tensors, how: str) -> None:
        from .fake_trace import is_fake

        if self.fake or any(is_fake(t) for t in tensors):
            raise Error(f"capturing '{self.graph_name}' with fake tensors: the step reads a tensor's value "
                        f"({_HOW.get(how, how)} at {_user_frame()}); fake tensors have no values: capture with "
                        f"fake=False (runs the step on the example inputs and guards the value it reads)")

    def add_value(self, how: str, nodes, value, args=()) -> None:
        self.guards.append(Guard("value", f"`{_HOW.get(how, how)}` at {_user_frame()}", value, node=nodes[0],
                                 read=how, args=args, nodes=tuple(nodes)))


class patched_tolist:
    """Routes Tensor.tolist and Tensor.numpy (which read memory without
    dispatching) through `reads` while capturing: the value becomes a guard
    (a .numpy() array is guarded as its list of values)."""

    def __init__(self, reads: ValueReads):
        self.reads = reads

    def __enter__(self):
        reads = self.reads
        self.originals = {"tolist": torch.Tensor.tolist, "numpy": torch.Tensor.numpy}

        def patched(how, original):
            def read(t, *args, **kwargs):
                node = _traced_node(t)
                if node is None:
                    return original(t, *args, **kwargs)
                reads.check_not_fake([t], how)
                value = original(t, *args, **kwargs)
                reads.add_value(how, [node], value.tolist() if how == "numpy" else value)
                return value
            return read

        for how, original in self.originals.items():
            setattr(torch.Tensor, how, patched(how, original))
        return self

    def __exit__(self, *exc):
        for how, original in self.originals.items():
            setattr(torch.Tensor, how, original)
        return False


class patched_one_hot:
    """Routes F.one_hot with a class count through `reads`. Its C++ reads the
    indices' smallest and largest values only to check that they lie in
    [0, num_classes): guarded as those two values, a step whose batch has
    another largest label captured again (label smoothing or mixup by hand
    over 100 classes re-captured every step). The guard is that range
    instead; without a class count the largest value makes the shape and
    stays a value guard. With fake tensors (no values to check) the result
    is made as the C++ makes it, zeros with a 1 scattered at each index."""

    def __init__(self, reads: "ValueReads"):
        self.reads = reads

    def __enter__(self):
        import torch.nn.functional as F

        from .fake_trace import is_fake

        reads = self.reads
        self.original = original = F.one_hot

        def one_hot(t, num_classes=-1):
            node = _traced_node(t)
            if node is None or num_classes < 0:
                return original(t, num_classes)
            if reads.fake or is_fake(t):
                out = torch.zeros(*t.shape, num_classes, dtype=torch.long, device=t.device)
                out = out.scatter_(-1, t.unsqueeze(-1), 1)
            else:
                before = len(reads.guards)
                out = original(t, num_classes)
                del reads.guards[before:]  # its min and max, read to check the range
            reads.guards.append(Guard("value", f"the indices of `one_hot(..., {num_classes})` at {_user_frame()} "
                                               f"in [0, {num_classes})", True, node=node, read="in_range",
                                      args=(0, num_classes), nodes=(node,)))
            return out

        F.one_hot = one_hot
        return self

    def __exit__(self, *exc):
        import torch.nn.functional as F

        F.one_hot = self.original
        return False


def _read(how: str, values: Sequence[torch.Tensor], args: tuple) -> Any:
    t = values[0]
    if how == "in_range":  # args (lo, hi): every element in [lo, hi)
        lo, hi = args
        return t.numel() == 0 or bool((t.min() >= lo) & (t.max() < hi))
    if how in ("item", "_local_scalar_dense"):
        return t.item()
    if how == "is_nonzero":
        return bool(t.item())
    if how in ("tolist", "numpy"):
        return t.tolist()
    if how == "equal":
        return torch.equal(values[0], values[1])
    if how == "allclose":
        return torch.allclose(values[0], values[1], *args)
    raise Error(f"unknown value read {how!r}")


class GuardEvaluator:
    """Evaluates the guards of a captured step on new inputs."""

    def __init__(self, gm: torch.fx.GraphModule, guards: Sequence[Guard], placeholder_names: Sequence[Optional[str]]):
        self.guards = list(guards)
        self.placeholder_names = list(placeholder_names)
        self.inner = [g for g in self.guards if g.kind != "input"]
        self.gm = None
        if self.inner:
            self.gm = self._pruned(gm)

    def _pruned(self, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
        """The graph's ops up to the guarded nodes (their ancestors), returning them."""
        graph = torch.fx.Graph()
        env: Dict[torch.fx.Node, torch.fx.Node] = {}
        wanted = {n for g in self.inner for n in (g.nodes or (g.node,)) if n is not None}
        for g in self.inner:
            if None in (g.nodes or (g.node,)):
                raise Error(f"guards: {g.what} compares with a constant tensor; not supported")
        nodes = list(gm.graph.nodes)
        needed = set()
        by_name = {n.name: n for n in nodes}
        stack = [by_name[n] for n in wanted]
        while stack:
            n = stack.pop()
            if n in needed:
                continue
            needed.add(n)
            stack.extend(n.all_input_nodes)
        self.mutated = set()
        for n in nodes:
            if n.op == "placeholder":
                env[n] = graph.placeholder(n.name)  # every placeholder, in order
            elif n in needed and n.op != "output":
                env[n] = graph.node_copy(n, lambda x: env[x])
                target = getattr(n, "target", None)
                if isinstance(target, torch._ops.OpOverload) and written_args(target):
                    self.mutated.update(x.name for x in n.all_input_nodes if x.op == "placeholder")
        graph.output(tuple(env[by_name[n]] for n in sorted(wanted)))
        self.outputs = sorted(wanted)
        return torch.fx.GraphModule(gm, graph)

    def check(self, sources: Mapping[str, torch.Tensor], inputs: Sequence[Any]) -> GuardCheck:
        for g in self.guards:
            if g.kind != "input":
                continue
            shape, dtype = g.expected
            x = inputs[g.index] if g.index < len(inputs) else None
            if not isinstance(x, torch.Tensor):
                return GuardCheck(False, f"{g.what} is missing or not a tensor", g)
            if list(x.shape) != shape or x.dtype != dtype:
                return GuardCheck(False, f"{g.what} was {dtype} {shape}, now {x.dtype} {list(x.shape)}", g)
        if not self.inner:
            return GuardCheck(True)
        args = []
        for ph, name in zip([n for n in self.gm.graph.nodes if n.op == "placeholder"], self.placeholder_names):
            if not ph.users:
                args.append(None)  # not an ancestor of a guarded value
                continue
            v = sources.get(name) if name is not None else None
            if v is None:
                raise Error(f"guards: no value for '{name}', which a guarded value depends on")
            if isinstance(v, torch.Tensor):
                v = v.detach()
                if ph.name in self.mutated:
                    v = v.clone()
            args.append(v)
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                values = self.gm(*args)
        except Exception as e:  # noqa: BLE001 - a new shape or value breaks a specialized op
            return GuardCheck(False, f"the guarded part of the step fails on the new inputs: {type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else ''}")
        by_node = dict(zip(self.outputs, values))
        for g in self.inner:
            if g.kind == "shape":
                now = list(by_node[g.node].shape)
                if now != g.expected:
                    return GuardCheck(False, f"{g.what} was {g.expected}, now {now}", g)
                continue
            now = _read(g.read, [by_node[n] for n in (g.nodes or (g.node,))], g.args)
            if now != g.expected:
                return GuardCheck(False, f"{g.what} read {_short(g.expected)}, now {_short(now)}", g)
        return GuardCheck(True)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def fill_constants(gm: torch.fx.GraphModule, empties: Mapping[str, torch.Tensor]) -> int:
    """Replaces each uninitialized-memory factory whose result is read before
    any op writes it by a constant holding the value the traced step saw.

    ATen's C++ sometimes builds a tensor from host data without dispatching
    the copy (ctc_loss's `at::tensor(target_lengths)` is aten.empty, then a
    memcpy): the trace records only aten.empty, and a graph that runs it
    would read garbage. Only real tracing sees the data. Returns how many
    were replaced."""
    replaced = 0
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for n in list(gm.graph.nodes):
        value = empties.get(n.name)
        if value is None or not n.users:
            continue
        # The tensor and its views (select, view, ...: written through them is written).
        family, stack = set(), [n]
        while stack:
            m = stack.pop()
            family.add(m)
            stack += [u for u in m.users if u not in family and _is_view(u)]
        users = [u for m in family for u in m.users if u not in family]
        if not users:
            continue
        first = min(users, key=order.get)
        target = getattr(first, "target", None)
        if not isinstance(target, torch._ops.OpOverload):
            continue
        writes = any(_bound(first, target, name) in family for name in written_args(target))
        if writes:
            continue  # filled by an op (empty(...).bernoulli_(), .zero_(), a copy_ into a view): part of the step
        attr = f"_memfit_filled{replaced}"
        gm.register_buffer(attr, value)
        with gm.graph.inserting_before(n):
            constant = gm.graph.get_attr(attr)
        n.replace_all_uses_with(constant)
        gm.graph.erase_node(n)
        replaced += 1
    if replaced:
        gm.recompile()
    return replaced


def _is_view(node: torch.fx.Node) -> bool:
    target = getattr(node, "target", None)
    if not isinstance(target, torch._ops.OpOverload):
        return node.op == "call_function" and node.target.__name__ == "getitem" if callable(node.target) else False
    returns = target._schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


def _bound(node: torch.fx.Node, target, name: str):
    for a, v in zip(target._schema.arguments, node.args):
        if a.name == name:
            return v
    return node.kwargs.get(name)


class CaptureCache:
    """Captures of one program keyed by their guards: the step to run for
    given arguments, re-capturing on a miss.

        cache = CaptureCache(lambda args: memfit.capture(model, args, loss_fn=...))
        cap = cache.get((x, lengths))      # a capture whose guards hold, made if none does
        cache.misses, cache.hits, cache.reasons[-1], cache.thrashing

    Each cached capture is checked in turn (most recently used first); on a
    miss the program is captured anew for these arguments and kept (up to
    `max_entries`, least recently used dropped). `reasons` holds, per miss,
    what changed for the most recently used capture. `thrashing` is a message
    once `warn_after` steps in a row have missed (the program's values change
    every step, so every step re-captures and re-plans), else None.
    """

    def __init__(self, capture_fn: Callable[[Sequence[Any]], Any], max_entries: int = 8, warn_after: int = 3):
        if max_entries < 1:
            raise Error(f"max_entries = {max_entries} must be at least 1")
        self.capture_fn = capture_fn
        self.max_entries = max_entries
        self.warn_after = warn_after
        self.entries: List[Any] = []
        self.hits = 0
        self.misses = 0
        self.reasons: List[str] = []
        self._streak = 0

    def get(self, args: Sequence[Any], state: Optional[Mapping[str, torch.Tensor]] = None):
        first_reason = None
        for i, cap in enumerate(self.entries):
            check = cap.check_guards(args, state)
            if check.ok:
                self.entries.insert(0, self.entries.pop(i))
                self.hits += 1
                self._streak = 0
                return cap
            first_reason = first_reason or check.reason
        cap = self.capture_fn(args)
        self.misses += 1
        self._streak += 1
        self.reasons.append(first_reason or "first capture")
        self.entries.insert(0, cap)
        del self.entries[self.max_entries:]
        return cap

    @property
    def thrashing(self) -> Optional[str]:
        if self.warn_after <= 0 or self._streak < self.warn_after or self.hits + self.misses <= 1:
            return None
        recent = "; ".join(dict.fromkeys(self.reasons[-self._streak:]))
        return (f"re-captured on each of the last {self._streak} steps ({recent}): the program's values change "
                f"every step; make them fixed (pad to a bucket of lengths) or mark them static")
