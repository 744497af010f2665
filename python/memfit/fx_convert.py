"""Converts a make_fx joint graph (FX, ATen ops) into a memfit Graph.

  - node target "aten.add.Tensor" -> type "aten.add", overload "Tensor"
    ("default" dropped); tensor arguments become inputs in schema order,
    every other argument an attribute keyed by its schema name, an absent
    optional tensor an attribute None; dtypes / memory formats / devices as
    memfit's strings; bool lists as 0/1;
  - multi-output ops (native_layer_norm) get one tensor per output, named by
    their getitem node; ops with output_mask keep only the masked-in outputs;
  - shapes and dtypes come from the real values recorded by replaying the
    graph (Recorder), or, with fake tracing, from the fake tensors in
    node.meta["val"]; views that are not contiguous from offset 0 also get
    their strides and storage offset;
  - roles: parameter / buffer / input / optimizer_state for the
    placeholders, the loss is the output, results of the backward are
    gradients, parameter gradients are named "<param>.grad"; views
    (aten.view, aten.t, ...) and in-place results (aten.add_) alias their base
    and inherit its role;
  - phase: ops up to the loss are forward, ops from the gradient seed on are
    backward, the parameter update (after a marker the traced function
    leaves) is optimizer.
"""

from __future__ import annotations

import operator
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.fx

from .executor import DTYPE_NAMES, MEMORY_FORMAT_NAMES
from .graph import Error, Graph, Op, Tensor

# Ops whose outputs share their input's storage (memfit's registry views).
VIEW_OPS = {
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.t", "aten.permute", "aten.transpose", "aten.expand",
    "aten.slice", "aten.select", "aten.unsqueeze", "aten.squeeze", "aten.alias", "aten.detach", "aten.split",
    "aten.split_with_sizes", "aten.unbind", "aten.as_strided", "aten._reshape_alias", "aten.diagonal", "aten.unfold",
}


class _UniqueNames:
    """Hands out each name as given the first time, then with _1, _2, ... appended."""

    def __init__(self) -> None:
        self._uses: Dict[str, int] = {}

    def __call__(self, n: str) -> str:
        if n not in self._uses:
            self._uses[n] = 0
            return n
        self._uses[n] += 1
        return self(f"{n}_{self._uses[n]}")

    def reserve(self, n: str) -> None:
        """Marks n as taken (a name given outside this namer)."""
        self._uses.setdefault(n, 0)


def _qualified(target) -> Tuple[str, str]:
    """OpOverload -> ("aten.add", "Tensor")."""
    schema = target._schema
    ns, _, packet = schema.name.partition("::")
    overload = target._overloadname
    return f"{ns}.{packet}", "" if overload == "default" else overload


def _attr_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.dtype):
        return DTYPE_NAMES.get(value, str(value))
    if isinstance(value, torch.memory_format):
        return MEMORY_FORMAT_NAMES.get(value, str(value))
    if isinstance(value, torch.device):
        return value.type
    if isinstance(value, torch.layout):
        return str(value).replace("torch.", "")  # "strided", "sparse_coo" (runner.LAYOUTS)
    if isinstance(value, (list, tuple)):
        items = [_attr_value(v) for v in value]
        if any(isinstance(v, bool) for v in items):
            return [int(v) for v in items]
        if all(isinstance(v, (int, float)) for v in items):
            return items
        raise Error(f"cannot represent list attribute {value!r}")
    if hasattr(value, "node") and hasattr(value, "__int__"):  # SymInt
        return int(value)
    raise Error(f"cannot represent attribute {value!r} ({type(value).__name__})")


def _type_of(value) -> Tuple[List[int], str]:
    if isinstance(value, torch.Tensor) or hasattr(value, "shape") and hasattr(value, "dtype"):
        dtype = DTYPE_NAMES.get(value.dtype)
        if dtype is None:
            raise Error(f"unsupported dtype {value.dtype}")
        return [int(d) for d in value.shape], dtype
    raise Error(f"not a tensor: {value!r}")


def _layout(value: torch.Tensor) -> Tuple[List[int], int]:
    """(strides, storage offset) of a view, or ([], 0) when it is contiguous from offset 0."""
    offset = int(value.storage_offset())
    if value.is_contiguous() and offset == 0:
        return [], 0
    return [int(s) for s in value.stride()], offset


def _is_plain_view(bound, recorded, getitems) -> bool:
    """_reshape_alias(self, size, stride) that is self.view(size): PyTorch 1.13's reshape
    emits it, with the strides view computes, wherever a view can be made. It is
    recorded as the reshape it came from: linked like any reshape
    (analysis/dims.h), it follows a part's own layout when fission splits it,
    and it reads the right elements whatever layout its input gets where the
    capture's does not hold (a plan's arena holds every result row-major: a
    channels-last result permuted to NHWC is no longer a view there, and
    _reshape_alias's strides read the wrong elements)."""
    self = _node_value(bound["self"], recorded, getitems)
    try:
        return tuple(self.view(bound["size"]).stride()) == tuple(bound["stride"])
    except RuntimeError:
        return False


def _as_slices(bound, recorded, getitems) -> Optional[List[Tuple[int, int, int]]]:
    """as_strided(self, size, stride, storage_offset) that is a block of a contiguous self
    (its strides, an offset inside it): the (dim, start, end) slices that make it, [] for
    self itself; None otherwise. Autograd writes the backward of an assignment into a slice
    (`out[:, 1:, :c] = x[:, :-1, :c]`, a temporal shift) so. As slices the block is
    linked like any slice (analysis/dims.h) and follows a part's own layout when fission
    splits it, where as_strided's strides read its input's memory as the capture laid it out."""
    self = _node_value(bound["self"], recorded, getitems)
    size, stride = list(bound["size"]), list(bound["stride"])
    offset = bound.get("storage_offset")
    if not isinstance(self, torch.Tensor) or not self.is_contiguous() or self.numel() == 0:
        return None
    if len(size) != self.dim() or stride != list(self.stride()) or not all(isinstance(x, int) for x in size):
        return None
    rel = (offset if isinstance(offset, int) else self.storage_offset()) - self.storage_offset()
    slices = []
    for dim, (n, st, whole) in enumerate(zip(size, stride, self.shape)):
        start = rel // st if st > 0 else 0
        rel -= start * st
        if start < 0 or n < 1 or start + n > whole:
            return None
        if start != 0 or n != whole:
            slices.append((dim, start, start + n))
    return slices if rel == 0 else None


def _returns_tensors(target) -> bool:
    return any("Tensor" in str(r.type) for r in target._schema.returns)


def _node_value(n: torch.fx.Node, recorded: Dict[str, Any], getitems: Dict[Tuple[torch.fx.Node, int], torch.fx.Node]):
    """The node's value: recorded (real tracing), node.meta["val"] (fake tracing), a tuple
    assembled from its getitem nodes (multi-output ops), or None for ops that return no tensor."""
    if n.name in recorded:
        return recorded[n.name]
    if "val" in n.meta:
        return n.meta["val"]
    if n.op == "get_attr" and n.graph.owning_module is not None:
        return getattr(n.graph.owning_module, n.target)  # a constant: its value is there
    if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload):
        indices = [i for (node, i) in getitems if node is n]
        if indices:
            return tuple(getitems[(n, i)].meta.get("val") if (n, i) in getitems else None
                         for i in range(max(indices) + 1))
        if not _returns_tensors(n.target):
            return None
    raise Error(f"node '{n.name}': no recorded value or meta['val']")


def _functional_overload(target):
    """The overload of target's packet taking target's arguments without `out`, or None."""
    schema = target._schema
    wanted = [(a.name, str(a.type)) for a in schema.arguments if not (a.kwarg_only and a.name == "out")]
    packet = target.overloadpacket
    for name in packet.overloads():
        candidate = getattr(packet, name)
        if candidate is target:
            continue
        args = [(a.name, str(a.type)) for a in candidate._schema.arguments]
        if args == wanted:
            return candidate
    return None


def functionalize_out_variants(gm: torch.fx.GraphModule) -> int:
    """Rewrites each out= call (aten.div.out(a, b, out=o), what
    F.normalize(..., out=) in spectral_norm traces) as the functional
    overload then aten.copy_ into `out`: ops memfit's registry knows, the same
    values and aliasing. Returns how many were rewritten."""
    rewritten = 0
    for n in list(gm.graph.nodes):
        target = n.target
        if n.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        if not any(a.kwarg_only and a.name == "out" for a in target._schema.arguments):
            continue
        functional = _functional_overload(target)
        out = n.kwargs.get("out")
        if functional is None or not isinstance(out, torch.fx.Node):
            continue
        kwargs = {k: v for k, v in n.kwargs.items() if k != "out"}
        with gm.graph.inserting_before(n):
            value = gm.graph.call_function(functional, n.args, kwargs)
            copied = gm.graph.call_function(torch.ops.aten.copy_.default, (out, value))
        if "val" in n.meta:
            value.meta["val"] = copied.meta["val"] = n.meta["val"]
        n.replace_all_uses_with(copied)
        gm.graph.erase_node(n)
        rewritten += 1
    if rewritten:
        gm.recompile()
    return rewritten


class Recorder(torch.fx.Interpreter):
    """Replays the traced graph to record every node's real value."""

    def __init__(self, gm):
        super().__init__(gm)
        self.values: Dict[str, Any] = {}

    def run_node(self, n):
        result = super().run_node(n)
        self.values[n.name] = _snapshot(result)
        return result


def _snapshot(value):
    """The value with its metadata as of now: an in-place metadata op later in the
    graph (unsqueeze_, as_strided_, resize_) changes the tensor object itself,
    not this alias (only shapes, dtypes and strides are read from it)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_snapshot(v) for v in value)
    return value


def fx_to_graph(gm: torch.fx.GraphModule, placeholder_names: Sequence[Optional[str]], placeholder_roles: Sequence[str],
                loss_index: int, grad_names: Sequence[Optional[str]], name: str = "captured",
                recorded: Optional[Dict[str, Any]] = None, updated_names: Sequence[str] = ()) -> Graph:
    """Converts a make_fx joint graph into a memfit Graph.

    The traced function returns (loss, *grads) and the graph outputs are the
    loss and the gradients; or, for a step with an optimizer update,
    (loss, *grads, *updated, marker) where updated holds the final value of
    each source in updated_names (the parameters): the outputs are then the
    loss, the gradients of the parameters not updated, and those. A
    placeholder named None is the marker: the op that uses it starts the
    optimizer phase, and both are left out.
    """
    recorded = recorded or {}
    g = Graph(name=name, metadata={"source": "memfit.capture"})
    tensor_of: Dict[Any, int] = {}  # fx node (or (node, i)) -> tensor id
    unique = _UniqueNames()  # tensor names

    def add_tensor(key, tname: str, value, role: str, alias_of: Optional[int] = None) -> int:
        shape, dtype = _type_of(value)
        t = Tensor(id=len(g.tensors), name=unique(tname), shape=shape, dtype=dtype, role=role, alias_of=alias_of)
        if alias_of is not None and isinstance(value, torch.Tensor):
            t.strides, t.storage_offset = _layout(value)
        g.tensors.append(t)
        tensor_of[key] = t.id
        return t.id

    nodes = list(gm.graph.nodes)
    out_node = next(n for n in nodes if n.op == "output")
    results = out_node.args[0]
    loss_node = results[loss_index]
    order = {n: i for i, n in enumerate(nodes)}
    placeholders = [n for n in nodes if n.op == "placeholder"]
    marker = next((n for n, pname in zip(placeholders, placeholder_names) if pname is None), None)
    marker_users = set(marker.users) if marker is not None else set()
    optimizer_start = min((order[u] for u in marker_users), default=None)
    # The gradient seed: the first op after the loss that uses it (ones_like).
    seed_index = None
    for n in nodes:
        if n.op == "call_function" and loss_node in n.all_input_nodes and order[n] > order[loss_node]:
            seed_index = order[n]
            break
    getitems: Dict[Tuple[torch.fx.Node, int], torch.fx.Node] = {}
    for n in nodes:
        if n.op == "call_function" and n.target is operator.getitem:
            getitems[(n.args[0], n.args[1])] = n

    def phase_of(n: torch.fx.Node) -> str:
        if optimizer_start is not None and order[n] > optimizer_start:
            return "optimizer"
        return "backward" if seed_index is not None and order[n] >= seed_index else "forward"

    def scalar_tensor(value, sname: str, phase: str, like: Any = None) -> int:
        # torch wraps a Python float as a 0-dim double tensor, a "wrapped number" that never
        # changes the result's dtype: it computes in the dtype of the floating-point tensor
        # operand (0.1 exactly next to f64 tensors, 0.1f next to f32), or in the default
        # dtype, float32, next to integer tensors only. A plain 0-dim tensor of that dtype
        # gives the same result dtype here, also next to 0-dim operands (a double would not).
        dtype = torch.float32 if isinstance(value, float) else (torch.bool if isinstance(value, bool) else torch.int64)
        if isinstance(value, float) and isinstance(like, torch.Tensor) and like.dtype.is_floating_point:
            dtype = like.dtype
        tid = add_tensor(("scalar", len(g.tensors)), sname, torch.empty((), dtype=dtype),
                         "gradient" if phase == "backward" else "activation")
        op = Op(id=len(g.ops), name=unique_op(sname), type="aten.scalar_tensor", phase=phase, outputs=[tid],
                attrs={"s": value, "dtype": DTYPE_NAMES[dtype]})
        g.tensors[tid].producer = op.id
        g.ops.append(op)
        return tid

    unique_op = _UniqueNames()  # op names

    ph = 0
    tensor_of_attr: Dict[str, int] = {}
    for n in nodes:
        if n.op == "placeholder":
            if n is not marker:
                add_tensor(n, placeholder_names[ph], _node_value(n, recorded, getitems), placeholder_roles[ph])
            ph += 1
        elif n.op == "get_attr":
            # make_fx reads one constant (a tensor the step closes over) through a get_attr
            # node per use: one tensor of the graph, bound by the attribute's name.
            if n.target in tensor_of_attr:
                tensor_of[n] = tensor_of_attr[n.target]
            else:
                tensor_of_attr[n.target] = add_tensor(n, n.target, getattr(gm, n.target), "buffer")
        elif n.op == "call_function" and (n.target is operator.getitem or n in marker_users):
            continue  # getitem: handled with its producer
        elif n.op == "call_function":
            if not isinstance(n.target, torch._ops.OpOverload):
                raise Error(f"node '{n.name}': cannot convert call of {n.target} (not an ATen op overload)")
            type_, overload = _qualified(n.target)
            value = _node_value(n, recorded, getitems)
            if not isinstance(value, (torch.Tensor, tuple, list)):
                # Metadata queries autograd makes (aten.is_same_size -> bool):
                # no tensor, no memory; left out of the graph.
                if any(u.op != "output" for u in n.users):
                    raise Error(f"node '{n.name}' ({type_}) returns {type(value).__name__} and has users")
                continue
            phase = phase_of(n)
            op = Op(id=len(g.ops), name=unique_op(n.name), type=type_, overload=overload, phase=phase)
            schema = n.target._schema
            bound = {}
            for a, v in zip(schema.arguments, n.args):
                bound[a.name] = v
            bound.update(n.kwargs)
            if type_ == "aten._reshape_alias" and _is_plain_view(bound, recorded, getitems):
                op.type, op.overload, schema = "aten.reshape", "", torch.ops.aten.reshape.default._schema
                bound = {"self": bound["self"], "shape": bound["size"]}
            block_of = None  # an as_strided block made by slices: what the last slice reads
            if type_ == "aten.as_strided" and (slices := _as_slices(bound, recorded, getitems)) is not None:
                block_of = tensor_of[bound["self"]]
                part = _node_value(bound["self"], recorded, getitems)
                for dim, start, end in slices[:-1]:
                    part = part.narrow(dim, start, end - start)
                    tid = add_tensor(("slice", len(g.tensors)), n.name + ".block", part, g.tensors[block_of].role,
                                     alias_of=block_of)
                    sop = Op(id=len(g.ops), name=unique_op(n.name + ".block"), type="aten.slice", overload="Tensor",
                             phase=phase, inputs=[block_of], outputs=[tid],
                             attrs={"dim": dim, "start": start, "end": end, "step": 1})
                    g.tensors[tid].producer = sop.id
                    g.ops.append(sop)
                    block_of = tid
                dim, start, end = slices[-1] if slices else (0, 0, int(part.shape[0]) if part.dim() else 0)
                if part.dim() == 0:
                    op.type, op.overload, schema = "aten.alias", "", torch.ops.aten.alias.default._schema
                    bound = {"self": bound["self"]}
                else:
                    op.type, op.overload, schema = "aten.slice", "Tensor", torch.ops.aten.slice.Tensor._schema
                    bound = {"self": bound["self"], "dim": dim, "start": start, "end": end, "step": 1}
            for a in schema.arguments:
                if a.name not in bound:
                    continue
                v = bound[a.name]
                typ = str(a.type)
                if typ in ("Tensor", "Optional[Tensor]"):
                    if v is None:
                        op.attrs[a.name] = None
                    elif isinstance(v, torch.fx.Node):
                        op.inputs.append(tensor_of[v])
                    else:
                        # A Python number where the schema wants a tensor: torch
                        # wraps it into a 0-dim tensor; make that an op.
                        # The first floating-point tensor operand, if any (see scalar_tensor).
                        values = [_node_value(x, recorded, getitems) for x in n.all_input_nodes]
                        like = next((x for x in values if isinstance(x, torch.Tensor) and x.dtype.is_floating_point),
                                    None)
                        op.inputs.append(scalar_tensor(v, n.name + "." + a.name, phase, like))
                elif typ in ("List[Tensor]", "List[Optional[Tensor]]"):
                    if any(x is None for x in v):
                        # x[:, idx] is index(x, [None, idx]): the attribute of
                        # the list's name says which entries are tensors.
                        op.attrs[a.name] = [0 if x is None else 1 for x in v]
                    op.inputs.extend(tensor_of[x] for x in v if x is not None)
                else:
                    op.attrs[a.name] = _attr_value(v)
            if block_of is not None:
                op.inputs[0] = block_of
            # Outputs.
            first_in = op.inputs[0] if op.inputs else None
            base_role = g.tensors[first_in].role if first_in is not None else None
            is_view = type_ in VIEW_OPS
            is_inplace = type_.endswith("_") and not type_.endswith("__") and first_in is not None
            fresh_role = "gradient" if phase == "backward" else "activation"
            if isinstance(value, (tuple, list)):
                mask = op.attrs.get("output_mask")
                for i, v in enumerate(value):
                    if mask is not None and i < len(mask) and not mask[i]:
                        continue
                    if v is None:
                        continue
                    item = getitems.get((n, i))
                    key = item if item is not None else (n, i)
                    tname = item.name if item is not None else f"{n.name}.{i}"
                    if is_view:
                        tid = add_tensor(key, tname, v, base_role, alias_of=first_in)
                    else:
                        tid = add_tensor(key, tname, v, fresh_role)
                    op.outputs.append(tid)
            else:
                if is_view or is_inplace:
                    tid = add_tensor(n, n.name, value, base_role, alias_of=first_in)
                else:
                    tid = add_tensor(n, n.name, value, fresh_role)
                op.outputs.append(tid)
            op.id = len(g.ops)  # scalar_tensor ops may have been appended first
            for tid in op.outputs:
                g.tensors[tid].producer = op.id
            g.ops.append(op)
    # Graph outputs: the loss, then the parameter gradients or the updated sources.
    loss_tid = tensor_of[loss_node]
    g.tensors[loss_tid].role = "output"
    g.outputs.append(loss_tid)
    grad_results = results[loss_index + 1: loss_index + 1 + len(grad_names)]
    consumed = {f"{p}.grad" for p in updated_names}
    for r, gname in zip(grad_results, grad_names):
        if r is None or gname is None:
            continue
        tid = tensor_of[r]
        t = g.tensors[tid]
        if gname in consumed:
            # The update consumes the gradient; it is not an output. (A trainable parameter
            # the optimizer does not hold keeps its gradient, which loss.backward() leaves in .grad.)
            if t.producer is not None and t.role == "gradient" and tid not in g.outputs:
                unique.reserve(gname)
                t.name = gname
            continue
        if t.producer is None or tid in g.outputs or t.alias_of is not None:
            # A gradient that is a source or a view gets its own copy, as memfit's autodiff does.
            clone_id = len(g.tensors)
            g.tensors.append(Tensor(id=clone_id, name=gname, shape=list(t.shape), dtype=t.dtype, role="gradient"))
            op = Op(id=len(g.ops), name=f"copy.{gname}", type="aten.clone", phase="backward", inputs=[tid],
                    outputs=[clone_id])
            g.tensors[clone_id].producer = op.id
            g.ops.append(op)
            tid = clone_id
        else:
            unique.reserve(gname)
            t.name = gname
            t.role = "gradient"
        g.outputs.append(tid)
    updated_results = results[loss_index + 1 + len(grad_names): loss_index + 1 + len(grad_names) + len(updated_names)]
    for r in updated_results:
        g.outputs.append(tensor_of[r])
    return g
