"""Captures one training step of a PyTorch module as a memfit graph.

    cap = memfit.capture(model, (x, y), loss_fn=lambda out, x, y: F.cross_entropy(out, y))
    memfit.save(cap.graph, "model.json")        # memfit validate / stats / ...
    out = memfit.run(cap.graph, cap.inputs)      # reproduces eager

How: functorch's make_fx traces a function that runs the module functionally
(parameters and buffers as arguments), computes the loss, and calls
torch.autograd.grad of the loss with respect to the parameters. Tracing
happens at the ATen dispatcher, so the result is the joint forward + backward
graph in ATen ops (aten.addmm, aten.native_layer_norm_backward, ...), the same
vocabulary as the zoo's training graphs. The FX graph is then converted:

  - node target "aten.add.Tensor" -> type "aten.add", overload "Tensor"
    ("default" dropped); tensor arguments become inputs in schema order,
    every other argument an attribute keyed by its schema name, an absent
    optional tensor an attribute None; dtypes / memory formats / devices as
    memfit's strings; bool lists as 0/1;
  - multi-output ops (native_layer_norm) get one tensor per output, named by
    their getitem node; ops with output_mask keep only the masked-in outputs;
  - shapes and dtypes come from the traced values (node.meta["val"] or
    "tensor_meta", else the real values recorded by replaying the graph);
  - roles: parameter / buffer / input for the placeholders, the loss is the
    output, results of the backward are gradients, parameter gradients are
    named "<param>.grad"; views (aten.view, aten.t, ...) and in-place results
    (aten.add_) alias their base and inherit its role;
  - phase: ops up to the loss are forward, ops from the gradient seed on are
    backward.

The python -m memfit.capture command captures a torchvision model or a
built-in example and writes the graph JSON.
"""

from __future__ import annotations

import argparse
import operator
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

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


@dataclass
class Captured:
    graph: Graph
    # Values of every source tensor by memfit name (parameters, buffers,
    # inputs, traced constants), so memfit.run(graph, inputs) reproduces eager.
    inputs: Dict[str, torch.Tensor] = field(default_factory=dict)
    # The eager loss and parameter gradients, computed when capturing.
    loss: Optional[torch.Tensor] = None
    grads: Dict[str, torch.Tensor] = field(default_factory=dict)
    fx_graph: Optional[torch.fx.GraphModule] = None
    seconds: float = 0.0


def _make_fx():
    try:
        from torch.fx.experimental.proxy_tensor import make_fx
    except ImportError:  # pragma: no cover - older torch
        from functorch import make_fx
    return make_fx


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
        return "strided" if value == torch.strided else str(value)
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


def _val(node: torch.fx.Node, recorded: Dict[str, Any]):
    if node.name in recorded:
        return recorded[node.name]
    if "val" in node.meta:
        return node.meta["val"]
    raise Error(f"node '{node.name}': no recorded value or meta['val']")


def _type_of(value) -> Tuple[List[int], str]:
    if isinstance(value, torch.Tensor) or hasattr(value, "shape") and hasattr(value, "dtype"):
        dtype = DTYPE_NAMES.get(value.dtype)
        if dtype is None:
            raise Error(f"unsupported dtype {value.dtype}")
        return [int(d) for d in value.shape], dtype
    raise Error(f"not a tensor: {value!r}")


class _Recorder(torch.fx.Interpreter):
    """Replays the traced graph to record every node's real value."""

    def __init__(self, gm):
        super().__init__(gm)
        self.values: Dict[str, Any] = {}

    def run_node(self, n):
        result = super().run_node(n)
        self.values[n.name] = result
        return result


def fx_to_graph(gm: torch.fx.GraphModule, placeholder_names: Sequence[str], placeholder_roles: Sequence[str],
                loss_index: int, grad_names: Sequence[Optional[str]], name: str = "captured",
                recorded: Optional[Dict[str, Any]] = None) -> Graph:
    """Converts a make_fx joint graph returning (loss, *grads) into a memfit Graph."""
    recorded = recorded or {}
    g = Graph(name=name, metadata={"source": "memfit.capture"})
    tensor_of: Dict[Any, int] = {}  # fx node (or (node, i)) -> tensor id
    names_taken: Dict[str, int] = {}

    def unique(n: str) -> str:
        if n not in names_taken:
            names_taken[n] = 0
            return n
        names_taken[n] += 1
        return unique(f"{n}_{names_taken[n]}")

    def add_tensor(key, tname: str, value, role: str, alias_of: Optional[int] = None) -> int:
        shape, dtype = _type_of(value)
        t = Tensor(id=len(g.tensors), name=unique(tname), shape=shape, dtype=dtype, role=role, alias_of=alias_of)
        g.tensors.append(t)
        tensor_of[key] = t.id
        return t.id

    nodes = list(gm.graph.nodes)
    out_node = next(n for n in nodes if n.op == "output")
    results = out_node.args[0]
    loss_node = results[loss_index]
    # The gradient seed: the first op after the loss that uses it (ones_like).
    seed_index = None
    order = {n: i for i, n in enumerate(nodes)}
    for n in nodes:
        if n.op == "call_function" and loss_node in n.all_input_nodes and order[n] > order[loss_node]:
            seed_index = order[n]
            break
    getitems: Dict[Tuple[torch.fx.Node, int], torch.fx.Node] = {}
    for n in nodes:
        if n.op == "call_function" and n.target is operator.getitem:
            getitems[(n.args[0], n.args[1])] = n

    def scalar_tensor(value, sname: str, phase: str) -> int:
        dtype = torch.float32 if isinstance(value, float) else (torch.bool if isinstance(value, bool) else torch.int64)
        tid = add_tensor(("scalar", len(g.tensors)), sname, torch.empty((), dtype=dtype),
                         "gradient" if phase == "backward" else "activation")
        op = Op(id=len(g.ops), name=unique_op(sname), type="aten.scalar_tensor", phase=phase, outputs=[tid],
                attrs={"s": value, "dtype": DTYPE_NAMES[dtype]})
        g.tensors[tid].producer = op.id
        g.ops.append(op)
        return tid

    op_names: Dict[str, int] = {}

    def unique_op(n: str) -> str:
        if n not in op_names:
            op_names[n] = 0
            return n
        op_names[n] += 1
        return unique_op(f"{n}_{op_names[n]}")

    ph = 0
    for n in nodes:
        if n.op == "placeholder":
            add_tensor(n, placeholder_names[ph], _val(n, recorded), placeholder_roles[ph])
            ph += 1
        elif n.op == "get_attr":
            add_tensor(n, n.target, getattr(gm, n.target), "buffer")
        elif n.op == "call_function" and n.target is operator.getitem:
            continue  # handled with its producer
        elif n.op == "call_function":
            if not isinstance(n.target, torch._ops.OpOverload):
                raise Error(f"node '{n.name}': cannot convert call of {n.target} (not an ATen op overload)")
            type_, overload = _qualified(n.target)
            value = _val(n, recorded)
            if not isinstance(value, (torch.Tensor, tuple, list)):
                # Metadata queries autograd makes (aten.is_same_size -> bool):
                # no tensor, no memory; left out of the graph.
                if any(u.op != "output" for u in n.users):
                    raise Error(f"node '{n.name}' ({type_}) returns {type(value).__name__} and has users")
                continue
            phase = "backward" if seed_index is not None and order[n] >= seed_index else "forward"
            op = Op(id=len(g.ops), name=unique_op(n.name), type=type_, overload=overload, phase=phase)
            schema = n.target._schema
            bound = {}
            for a, v in zip(schema.arguments, n.args):
                bound[a.name] = v
            bound.update(n.kwargs)
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
                        op.inputs.append(scalar_tensor(v, n.name + "." + a.name, phase))
                elif typ in ("List[Tensor]", "List[Optional[Tensor]]"):
                    if any(x is None for x in v):
                        raise Error(f"node '{n.name}' ({type_}): tensor list with None entries is not supported")
                    op.inputs.extend(tensor_of[x] for x in v)
                else:
                    op.attrs[a.name] = _attr_value(v)
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
    # Graph outputs: the loss and the parameter gradients.
    loss_tid = tensor_of[loss_node]
    g.tensors[loss_tid].role = "output"
    g.outputs.append(loss_tid)
    for r, gname in zip(results[loss_index + 1:], grad_names):
        if r is None or gname is None:
            continue
        tid = tensor_of[r]
        t = g.tensors[tid]
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
            names_taken.setdefault(gname, 0)
            t.name = gname
            t.role = "gradient"
        g.outputs.append(tid)
    return g


def capture(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], loss_fn: Optional[Callable] = None,
            name: Optional[str] = None, num_module_inputs: Optional[int] = None) -> Captured:
    """Traces one training step (forward, loss, gradients of every parameter)
    of `module` on `example_inputs`.

    loss_fn(output, *example_inputs) -> scalar loss; by default output.sum()
    (or the output itself when it is already a scalar). The module gets the
    first num_module_inputs example inputs (all by default); the others
    (labels) only reach loss_fn. All become graph inputs. The module keeps its
    mode (train() for dropout and BatchNorm batch statistics). Buffers mutated
    by the step (BatchNorm running statistics) are updated once by tracing
    and once by the eager reference; the values in Captured.inputs are those
    before the step.
    """
    from torch.nn.utils import stateless

    example_inputs = tuple(example_inputs)
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    pnames, bnames = list(params), list(buffers)
    inames = [f"input{i}" if len(example_inputs) > 1 else "input" for i in range(len(example_inputs))]
    flat = [p.detach().clone() for p in params.values()] + [b.clone() for b in buffers.values()] + [
        x.detach().clone() if isinstance(x, torch.Tensor) else x for x in example_inputs]
    start_values = {n: v.clone() for n, v in zip(pnames + bnames + inames, flat)}

    def loss_of(out, inputs):
        if loss_fn is not None:
            return loss_fn(out, *inputs)
        return out if out.dim() == 0 else out.sum()

    def step(*args):
        ps = [a for a in args[: len(pnames)]]
        bs = args[len(pnames): len(pnames) + len(bnames)]
        xs = args[len(pnames) + len(bnames):]
        state = dict(zip(pnames, ps))
        state.update(zip(bnames, bs))
        k = len(xs) if num_module_inputs is None else num_module_inputs
        out = stateless.functional_call(module, state, tuple(xs[:k]))
        loss = loss_of(out, xs)
        seed = torch.ones_like(loss)
        grads = torch.autograd.grad(loss, ps, grad_outputs=seed, allow_unused=True)
        return (loss, *grads)

    def traced_step(*args):
        # make_fx passes plain tensors; parameters must require grad inside.
        args = list(args)
        for i in range(len(pnames)):
            args[i] = args[i].detach().requires_grad_(True)
        return step(*args)

    t0 = time.perf_counter()
    torch.manual_seed(0)
    gm = _make_fx()(traced_step)(*[v.clone() for v in flat])
    seconds = time.perf_counter() - t0

    # Record every node's real value (torch 1.13's real-mode make_fx leaves
    # no shape metadata on the nodes).
    rec = _Recorder(gm)
    torch.manual_seed(0)
    rec.run(*[v.clone() for v in flat])
    recorded = rec.values

    graph_name = name or type(module).__name__
    roles = ["parameter"] * len(pnames) + ["buffer"] * len(bnames) + [
        "input" for _ in inames]
    g = fx_to_graph(gm, pnames + bnames + inames, roles, 0, [p + ".grad" for p in pnames], graph_name, recorded)
    g.metadata["model"] = graph_name
    inputs = {t.name: start_values[t.name] for t in g.tensors if t.name in start_values and t.producer is None}
    for t in g.tensors:
        if t.producer is None and t.name not in inputs and hasattr(gm, t.name):
            inputs[t.name] = getattr(gm, t.name)

    # Eager reference from the same starting values.
    torch.manual_seed(0)
    eager = step(*[v.clone().requires_grad_(True) if i < len(pnames) else v.clone() for i, v in enumerate(flat)])
    grads = {p + ".grad": gr.detach() for p, gr in zip(pnames, eager[1:]) if gr is not None}
    return Captured(graph=g, inputs=inputs, loss=eager[0].detach(), grads=grads, fx_graph=gm, seconds=seconds)


# ---- command line -------------------------------------------------------------


def _example(name: str, batch: int, image: int, seq: int):
    import torch.nn as nn
    import torch.nn.functional as F

    if name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(image * image, 256), nn.ReLU(), nn.Linear(256, 10))
        x = torch.randn(batch, 1, image, image)
        y = torch.randint(0, 10, (batch,))
        return model, (x, y), lambda out, x, y: F.cross_entropy(out, y)
    if name == "transformer":
        model = nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, batch_first=True)
        return model, (torch.randn(batch, seq, 64),), None
    import torchvision.models as tvm

    if not hasattr(tvm, name):
        raise Error(f"unknown model '{name}' (mlp, transformer, or a torchvision.models name such as resnet18)")
    model = getattr(tvm, name)(num_classes=10)
    x = torch.randn(batch, 3, image, image)
    y = torch.randint(0, 10, (batch,))
    return model, (x, y), lambda out, x, y: F.cross_entropy(out, y)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m memfit.capture",
                                     description="Capture one training step of a PyTorch model as a memfit graph")
    parser.add_argument("model", help="mlp, transformer, or a torchvision.models name (resnet18, mobilenet_v2, ...)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("-o", "--output", required=True, help="graph JSON to write")
    parser.add_argument("--check", action="store_true", help="run the graph with memfit.run and compare with eager")
    args = parser.parse_args(argv)
    from .graph import save

    try:
        torch.manual_seed(0)
        model, inputs, loss_fn = _example(args.model, args.batch, args.image, args.seq)
        model.train()
        # The loss only reads the labels; they are not inputs of the module.
        cap = capture(model, inputs, loss_fn=loss_fn, name=args.model, num_module_inputs=1)
        save(cap.graph, args.output)
        print(f"wrote {args.output}: {len(cap.graph.ops)} ops, {len(cap.graph.tensors)} tensors, "
              f"captured in {cap.seconds:.2f} s", file=sys.stderr)
        if args.check:
            from .executor import run
            from .verify import relative_error

            out = run(cap.graph, cap.inputs)
            worst = max((relative_error(out[k], v) for k, v in cap.grads.items()), default=0.0)
            print(f"loss {out[cap.graph.tensors[cap.graph.outputs[0]].name].item():.6g} (eager {cap.loss.item():.6g}), "
                  f"max relative gradient error {worst:.3e}")
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
