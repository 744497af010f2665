"""Side effects of a forward that a captured graph would drop.

A captured step is a graph of tensor ops; whatever else the forward does runs
once, while capturing, and never again when the graph runs:

  * Python state: an attribute of a module assigned or changed in forward
    (`self.calls += 1`, `self.log.append(...)`, `self.cache = t`) -- capture
    detects it (PythonState: a shallow fingerprint of every module's
    attributes before and after the traced step), puts the attributes back
    and fails with a message naming the attribute (PythonStateChanged);
    memfit.fit then runs the step with graph breaks, where the Python runs
    every step, and captures it again after its first run (a cache built at
    the first call is state set once);
  * a registered buffer reassigned (`self.avg = 0.9 * self.avg + ...`, not
    in place): kept -- the new value is copied into the buffer inside the
    traced step (keep_reassigned_buffers), so the graph writes it as it writes
    BatchNorm's running statistics;
  * print(): the graph does not print; capture warns once (count_prints);
  * Python's `random` or NumPy's global generator drawn in forward (teacher
    forcing by `random.random() < p`, a random crop size): the graph would
    replay the draws of the capture on every step -- capture detects it
    (PythonState compares the generators' states), puts them back and fails;
    memfit.fit then runs the step with graph breaks, where the Python draws
    every step, as in eager. A module's own CPU torch.Generator is put back the
    same way (a graph draws from torch's default generator only: an op given
    one is a capture error, memfit.guards).

  * a tensor the step closes over but does not own (not a parameter, buffer
    or input: a global counter, class weights of the loss_fn) written in
    place: the graph holds it as a constant, so it would be written once per
    capture and once per step on a tensor capture may have copied -- capture
    fails (check_constant_writes, StepNotAGraph: not retried with real
    tracing, which would write it) and memfit.fit runs the step with graph
    breaks, where the write runs in Python every step. Read only, such a
    tensor is a constant of the graph.

Not detected: state outside the modules (a global counter, a closure's list,
an object the module refers to but does not own is compared by identity
only), generators other than those, and file or network I/O.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import random
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .graph import Error
from .torch_compat import written_args

# nn.Module's own bookkeeping: the parameters, buffers and children (compared by
# capture itself) and hook tables.
_INTERNAL = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "_backward_hooks",
             "_forward_hooks", "_forward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks",
             "_load_state_dict_post_hooks", "_is_full_backward_hook", "_flat_weights"}
_SCALARS = (int, float, bool, str, bytes, complex, type(None))


def _fingerprint(v: Any) -> Any:
    if isinstance(v, _SCALARS):
        return ("value", v)
    if isinstance(v, torch.Tensor):
        return ("tensor", id(v))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, id(v), len(v), tuple(x if isinstance(x, _SCALARS) else id(x) for x in v))
    if isinstance(v, dict):
        return ("dict", id(v), len(v), tuple((k, x if isinstance(x, _SCALARS) else id(x)) for k, x in v.items()
                                           if isinstance(k, _SCALARS)))
    if isinstance(v, set):
        return ("set", id(v), len(v))
    return ("object", id(v))


def _numpy_random():
    """numpy.random where NumPy is imported already (the forward can only draw from it then)."""
    numpy = sys.modules.get("numpy")
    return getattr(numpy, "random", None) if numpy is not None else None


def _same_numpy_state(a, b) -> bool:
    return a[0] == b[0] and a[2:] == b[2:] and bool((a[1] == b[1]).all())


def _recomputed_by_hooks(m: torch.nn.Module) -> set:
    """The attributes a forward pre-hook of `m` recomputes from parameters before
    every forward, which the graph computes too: weight_norm's and
    spectral_norm's `hook.name`, torch.nn.utils.prune's `hook._tensor_name`
    (`weight = weight_orig * weight_mask`; as state, a pruned model ran with
    graph breaks, many times slower than eager)."""
    hooks = m._forward_pre_hooks.values()
    return {getattr(h, "name", None) for h in hooks} | {getattr(h, "_tensor_name", None) for h in hooks}


class PythonState:
    """The Python attributes of every module of `module` (not its parameters,
    buffers or children), and the states of Python's and NumPy's global random
    generators, to see what a forward changed and put it back."""

    def __init__(self, module: torch.nn.Module):
        self.random_state = random.getstate()
        np_random = _numpy_random()
        self.numpy_state: Optional[tuple] = np_random.get_state() if np_random is not None else None
        self.entries: Dict[Tuple[str, str], Tuple[Any, Any, Any]] = {}
        self.modules = list(module.named_modules())
        # A module's own torch.Generator (torch.rand(..., generator=self.gen)): its name, itself, its state.
        self.generators = [(f"{prefix + '.' if prefix else ''}{k}", v, v.get_state()) for prefix, m in self.modules
                           for k, v in m.__dict__.items() if isinstance(v, torch.Generator) and v.device.type == "cpu"]
        self.keys = {}
        for prefix, m in self.modules:
            self.keys[prefix] = set(m.__dict__)
            derived = _recomputed_by_hooks(m)
            for k, v in m.__dict__.items():
                if k in _INTERNAL or k in derived:
                    continue
                saved = copy.copy(v) if isinstance(v, (list, dict, set)) else None
                self.entries[(prefix, k)] = (v, _fingerprint(v), saved)

    def changes(self) -> List[str]:
        """'<module>.<attr>: what changed' for each attribute the forward changed, and
        which global random generator it drew from."""
        out = []
        if random.getstate() != self.random_state:
            out.append("Python's `random` drew numbers")
        np_random = _numpy_random()
        if np_random is not None and self.numpy_state is not None and \
                not _same_numpy_state(np_random.get_state(), self.numpy_state):
            out.append("`numpy.random` drew numbers")
        for name, generator, state in self.generators:
            if not torch.equal(generator.get_state(), state):
                out.append(f"`{name}` (torch.Generator) drew numbers")
        for prefix, m in self.modules:
            dot = prefix + "." if prefix else ""
            derived = _recomputed_by_hooks(m)
            for k in sorted(set(m.__dict__) - self.keys[prefix] - _INTERNAL - derived):
                out.append(f"`{dot}{k}` assigned")
            for k in sorted(self.keys[prefix] - set(m.__dict__) - derived):
                if (prefix, k) in self.entries:
                    out.append(f"`{dot}{k}` deleted")
            for k, v in m.__dict__.items():
                entry = self.entries.get((prefix, k))
                if entry is None:
                    continue
                before, fp, _ = entry
                if v is not before:
                    out.append(f"`{dot}{k}` {before!r} -> {v!r}" if isinstance(before, _SCALARS) and
                               isinstance(v, _SCALARS) else f"`{dot}{k}` reassigned")
                elif _fingerprint(v) != fp:
                    what = f"{fp[2]} -> {len(v)} items" if isinstance(v, (list, dict, set)) and len(v) != fp[2] \
                        else "changed in place"
                    out.append(f"`{dot}{k}` ({type(v).__name__}) {what}")
        return out

    def restore(self) -> None:
        random.setstate(self.random_state)
        np_random = _numpy_random()
        if np_random is not None and self.numpy_state is not None:
            np_random.set_state(self.numpy_state)
        for _, generator, state in self.generators:
            generator.set_state(state)
        for prefix, m in self.modules:
            derived = _recomputed_by_hooks(m)
            for k in set(m.__dict__) - self.keys[prefix] - _INTERNAL - derived:
                del m.__dict__[k]
            for (p, k), (before, _, saved) in self.entries.items():
                if p != prefix:
                    continue
                m.__dict__[k] = before
                if isinstance(before, list):
                    before[:] = saved
                elif isinstance(before, (dict, set)):
                    before.clear()
                    before.update(saved)


@contextlib.contextmanager
def module_state_kept(module: torch.nn.Module):
    """While inside, a run of `module` that only sets something up (a profiling
    forward, graph breaks' dry run); after it, the module's parameters and
    buffers have their values again and its Python state is put back, so the
    step's own run makes the forward's effects once (a momentum encoder's
    `k.data = ...` was applied twice in the first step when parameters were
    left out)."""
    state = [(t, t.detach().clone()) for t in [*module.parameters(), *module.buffers()]]
    python_state = PythonState(module)
    try:
        yield
    finally:
        python_state.restore()
        for t, v in state:
            put_back(t, v)


class StepNotAGraph(Error):
    """The step cannot be one graph however it is traced (a write to a tensor
    it closes over): memfit.fit does not trace it again for real (which would
    run the write) but runs it with graph breaks, putting `written` (those
    tensors) back after the runs that set the breaks up."""

    def __init__(self, message: str, written: Sequence[torch.Tensor] = ()):
        super().__init__(message)
        self.written = list(written)


def check_constant_writes(gm: torch.fx.GraphModule, graph_name: str) -> None:
    """StepNotAGraph where the traced step writes in place into a constant of
    the graph (a get_attr tensor, or a view of one)."""
    nodes = _written_constants(gm)
    if not nodes:
        return
    written = list({id(t): t for t in (getattr(gm, n.target) for n in nodes)}.values())
    value = written[0]
    raise StepNotAGraph(
        f"capturing '{graph_name}': the step writes in place into a {str(value.dtype).replace('torch.', '')} "
        f"{list(value.shape)} tensor it closes over, which is not a parameter, buffer or input (a counter or "
        f"statistic kept outside the model); a graph would hold it as a constant (memfit.fit runs such a step "
        f"with graph breaks; or register it as a buffer of the model)", written)


def _written_constants(gm: torch.fx.GraphModule) -> List[torch.fx.Node]:
    """The get_attr nodes an op of gm writes in place (directly or through views)."""
    found = []
    for n in gm.graph.nodes:
        if n.op != "call_function" or not isinstance(n.target, torch._ops.OpOverload):
            continue
        written = written_args(n.target)
        for a, v in zip(n.target._schema.arguments, n.args):
            if a.name not in written or not isinstance(v, torch.fx.Node):
                continue
            root = _view_base(v)
            if root.op == "get_attr":
                found.append(root)
    return found


def _view_base(v: torch.fx.Node) -> torch.fx.Node:
    """The node whose storage v shares: followed back through views and in-place
    results (any op whose first return aliases an argument; guards._is_view
    takes views only), itself when v aliases nothing."""
    while v.op == "call_function" and isinstance(v.target, torch._ops.OpOverload) and v.target._schema.returns and \
            v.target._schema.returns[0].alias_info is not None and v.args and isinstance(v.args[0], torch.fx.Node):
        v = v.args[0]
    return v


def put_back(t: torch.Tensor, value: torch.Tensor) -> None:
    """t.copy_(value) under no_grad, where the run being undone may have resized t
    in place: a quantization observer's min / max and scale, made [0] at
    construction and sized by the first forward (restoring them by copy_
    alone failed with a shape mismatch)."""
    with torch.no_grad():
        if t.shape != value.shape:
            t.resize_(value.shape)
        t.copy_(value)


def state_resized(graph_name: str, names: Sequence[str], before: Sequence[torch.Tensor],
                  after: Sequence[torch.Tensor]) -> None:
    """PythonStateChanged (not drawn) where the traced step resized a parameter or
    buffer in place: a graph's sources keep their shapes, and the step would
    keep resizing nothing. memfit.fit then runs that step with graph breaks and
    captures it again after it (an observer sizes its statistics once)."""
    changed = [(n, list(b.shape), list(a.shape)) for n, b, a in zip(names, before, after) if a.shape != b.shape]
    if changed:
        n, b, a = changed[0]
        more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
        raise PythonStateChanged(
            f"capturing '{graph_name}': the forward resizes '{n}' from {b} to {a}{more} in place; a captured "
            f"graph keeps every source's shape (memfit.fit runs such a step with graph breaks, then captures it "
            f"again)", False)


class PythonStateChanged(Error):
    """The traced forward changed Python state (check_python_state). `drew`:
    a random generator drew numbers, which a forward does at every call; an
    attribute alone may be set once (a cache built at the first call)."""

    def __init__(self, message: str, drew: bool):
        super().__init__(message)
        self.drew = drew


def check_python_state(graph_name: str, changes: List[str]) -> None:
    if changes:
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise PythonStateChanged(
            f"capturing '{graph_name}': the forward changes Python state: {', '.join(changes[:3])}{more}; a "
            f"captured graph would do it once, while capturing, and never when it runs (memfit.fit runs such a "
            f"step with graph breaks, where the Python runs every step)",
            any(c.endswith("drew numbers") for c in changes))


@contextlib.contextmanager
def count_prints(calls: List[str]):
    """builtins.print records where it was called (and still prints) while inside."""
    from .guards import _user_frame

    original = builtins.print

    def counted(*args, **kwargs):
        calls.append(_user_frame())
        return original(*args, **kwargs)

    builtins.print = counted
    try:
        yield calls
    finally:
        builtins.print = original


@contextlib.contextmanager
def keep_reassigned_buffers(module: torch.nn.Module, state: Dict[str, torch.Tensor], graph_name: str):
    """While module(*args) runs with `state` substituted (functional_call): a
    buffer the forward reassigns is copied into its substitute after the forward,
    so the traced step writes it (functional_call would restore the old one and
    drop the new value)."""

    names = [n for n, _ in module.named_buffers()]
    given_by_name = dict(state)  # torch 1.13's functional_call stores an assigned value into `state`

    def hook(mod, args, out):
        for name in names:
            prefix, _, leaf = name.rpartition(".")
            # Read through the attribute: functional_call serves the substitute (or the
            # value the forward assigned) there, not in _buffers.
            now = getattr(module.get_submodule(prefix) if prefix else module, leaf, None)
            given = given_by_name.get(name)
            if given is None or now is given or not isinstance(now, torch.Tensor):
                continue
            if now.shape != given.shape or now.dtype != given.dtype:
                raise Error(f"capturing '{graph_name}': the forward reassigns buffer '{name}' with "
                            f"{now.dtype} {list(now.shape)}, it was {given.dtype} {list(given.shape)}; a buffer "
                            f"must keep its shape and dtype")
            with torch.no_grad():
                given.copy_(now)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
