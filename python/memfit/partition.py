"""memfit as functorch's partitioner: which forward tensors the backward saves, and which it recomputes.

    from functorch.compile import aot_function, aot_module
    part = memfit.partition_fn(ratio=0.5)             # or budget_bytes=..., device=, costs=
    f = aot_function(fn, fw_compiler=..., bw_compiler=..., partition_fn=part)
    part.last                                         # PartitionReport of the latest partition

aot_function traces the joint forward + backward of `fn` into one FX graph and
hands it to a partitioner, which splits it into a forward module (returning
the forward's outputs and the tensors saved for the backward) and a backward
module (taking the saved tensors and the incoming gradients). memfit's
partitioner:

1. converts the joint graph into a memfit graph (memfit.fx_convert, with the
   shapes of one replay of the joint graph on the inputs aot_function traced
   with; torch's RNG state is restored after it);
2. when the forward saves more activation bytes than the budget, asks memfit's
   optimizer (memfit.optimize, the native module) for the fastest plan of
   the joint graph in program order, recompute only (no swaps, no reordering,
   no fission, random ops never recomputed) under a memory limit: the
   original peak less the bytes over budget, lowered again by the excess
   until the saved bytes fit (at most `rounds` times);
3. reads the plan at the boundary (just before the first op that uses an
   incoming gradient): forward tensors whose storage the plan holds there
   are saved; the others, which the plan frees and recomputes, are
   recomputed by the backward module from the saved ones (walking back from
   the backward's uses; primal inputs are saved, they are alive anyway;
   random ops are always saved);
4. builds the two modules with functorch's own extraction
   (_extract_fwd_bwd_modules), as default_partition and
   min_cut_rematerialization_partition do.

Saved bytes are counted per storage (a view of a saved tensor costs nothing
more) and without the primal inputs (parameters and inputs, alive anyway):
the activations the forward keeps for the backward. `ratio` is of that figure
under default_partition (which saves every forward tensor the backward reads).

memfit.backend(...) is the same partitioner for torch.compile (PyTorch 2.x);
on torch 1.13, which has no torch.compile, it raises memfit.Error.
"""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set

import torch
import torch.fx as fx

from .fx_convert import VIEW_OPS, Recorder, fx_to_graph
from .graph import Error, Graph

# Random ops: the backward must not recompute them (a second draw differs).
_RANDOM_WORDS = ("rand", "bernoulli", "dropout", "normal", "uniform", "exponential", "multinomial", "cauchy",
                 "geometric", "poisson")


def _partitioners():
    """functorch's partitioners module (torch 1.13: functorch._src; 2.x: torch._functorch)."""
    try:
        from torch._functorch import partitioners as p  # type: ignore[attr-defined]
    except ImportError:
        try:
            from functorch._src import partitioners as p  # type: ignore[no-redef]
        except ImportError:
            raise Error("memfit.partition_fn needs functorch (functorch.compile.aot_function); "
                        "this torch has neither torch._functorch nor functorch") from None
    return p


def _aten_name(node: fx.Node) -> str:
    """"aten.relu" for a call of torch.ops.aten.relu.default, "" otherwise."""
    target = node.target
    if node.op != "call_function" or not hasattr(target, "_schema"):
        return ""
    ns, _, name = target._schema.name.partition("::")
    return f"{ns}.{name}"


def is_random(node: fx.Node) -> bool:
    name = _aten_name(node)
    return any(w in name for w in _RANDOM_WORDS)


def _is_alias(node: fx.Node) -> bool:
    """The node's result shares its first argument's storage (a view, or an in-place op)."""
    name = _aten_name(node)
    if not name:
        return False
    return name in VIEW_OPS or (name.endswith("_") and not name.endswith("__"))


def storage_root(node: fx.Node) -> fx.Node:
    """The node that owns node's storage: through views and in-place ops to their base."""
    while _is_alias(node) and node.args and isinstance(node.args[0], fx.Node):
        node = node.args[0]
    return node


def _value(node: fx.Node) -> Any:
    meta = node.meta.get("tensor_meta")
    if meta is not None and hasattr(meta, "shape"):
        return meta
    val = node.meta.get("val")
    return val if isinstance(val, torch.Tensor) else None


def node_bytes(node: fx.Node) -> int:
    """Bytes of the node's tensor from its FX metadata (0 for non-tensors)."""
    v = _value(node)
    if v is None:
        return 0
    n = torch.empty((), dtype=v.dtype).element_size()
    for d in v.shape:
        n *= int(d)
    return n


def saved_activation_bytes(saved: Sequence[fx.Node]) -> int:
    """Bytes of the distinct storages of `saved`, less those of primal inputs."""
    roots = {storage_root(n) for n in saved}
    return sum(node_bytes(r) for r in roots if r.op != "placeholder")


def backward_saved_bytes(joint_module: fx.GraphModule, bw_module: fx.GraphModule) -> int:
    """saved_activation_bytes of what bw_module takes from the forward (its inputs
    other than tangents_*), any partitioner's: counted on joint_module's nodes."""
    names = {n.name for n in bw_module.graph.nodes if n.op == "placeholder" and "tangents" not in n.name}
    return saved_activation_bytes([n for n in joint_module.graph.nodes if n.name in names])


def tangent_dependent(graph: fx.Graph) -> Set[fx.Node]:
    """Nodes that read an incoming gradient (tangents_*), directly or not: the backward."""
    out: Set[fx.Node] = set()
    for n in graph.nodes:
        if (n.op == "placeholder" and "tangents" in str(n.target)) or any(a in out for a in n.all_input_nodes):
            out.add(n)
    return out


def choose_saved(graph: fx.Graph, keep) -> List[fx.Node]:
    """The forward nodes the backward takes as inputs when `keep(node)` says
    which forward tensors are held at the boundary: walking back from each
    backward node's forward inputs, a kept node, a primal input or a random
    op is saved; any other forward node is recomputed, so its own inputs are
    walked. The result is a cut between the primals and the backward."""
    backward = tangent_dependent(graph)
    saved: List[fx.Node] = []
    seen: Set[fx.Node] = set()

    def must_save(n: fx.Node) -> bool:
        if n.op == "placeholder":
            return True
        producer = n.args[0] if n.target is operator.getitem else n
        return keep(n) or is_random(producer) or (isinstance(producer, fx.Node) and is_random(storage_root(producer)))

    stack: List[fx.Node] = [a for b in graph.nodes if b in backward and b.op == "call_function"
                            for a in b.all_input_nodes if a not in backward]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "get_attr":
            continue
        if n.op != "call_function":
            saved.append(n)
            continue
        tuple_node = _value(n) is None and n.users and all(u.target is operator.getitem for u in n.users)
        if not tuple_node and must_save(n):
            saved.append(n)
            continue
        stack.extend(a for a in n.all_input_nodes if a not in seen)
    order = {n: i for i, n in enumerate(graph.nodes)}
    return sorted(saved, key=lambda n: order[n])


@dataclass
class PartitionReport:
    """What the latest partition decided."""
    saved: List[str]                 # the forward nodes the backward takes (names)
    recomputed: List[str]            # forward ops the backward module runs again
    saved_bytes: int                 # activation bytes saved (per storage, without primals)
    default_saved_bytes: int         # the same under default_partition
    budget_bytes: Optional[int]      # None: no budget given
    mem_limit_bytes: Optional[int] = None  # the limit of memfit's last plan (None: no plan needed)
    rounds: int = 0                  # optimizer calls made
    plan_figures: Dict[str, Any] = field(default_factory=dict)


class MemfitPartitioner:
    """A partition_fn for functorch.compile.aot_function / aot_module (see the module's doc)."""

    def __init__(self, budget_bytes=None, *, ratio: Optional[float] = None, device: str = "cpu", costs=None,
                 work_budget: int = 200, rounds: int = 8, method: str = "heuristic"):
        from .native import parse_bytes

        if budget_bytes is not None and ratio is not None:
            raise Error("memfit.partition_fn: give budget_bytes or ratio, not both")
        if ratio is not None and not (0.0 <= float(ratio) <= 1e6):
            raise Error(f"memfit.partition_fn: ratio {ratio!r} is out of range (0 to 1e6)")
        if rounds < 1:
            raise Error(f"memfit.partition_fn: rounds must be at least 1 (got {rounds})")
        self.budget_bytes = parse_bytes(budget_bytes) if budget_bytes is not None else None
        self.ratio = None if ratio is None else float(ratio)
        self.device = device
        self.costs = costs
        self.work_budget = work_budget
        self.method = method
        self.rounds = rounds
        self.last: Optional[PartitionReport] = None
        self.reports: List[PartitionReport] = []

    def __call__(self, joint_module: fx.GraphModule, joint_inputs, **kwargs):
        p = _partitioners()
        joint_module.graph.eliminate_dead_code()
        joint_module.recompile()
        graph = joint_module.graph
        default_saved = choose_saved(graph, lambda n: True)
        default_bytes = saved_activation_bytes(default_saved)
        budget = self.budget_bytes
        if budget is None and self.ratio is not None:
            budget = int(self.ratio * default_bytes)
        if budget is None or default_bytes <= budget:
            report = PartitionReport([n.name for n in default_saved], [], default_bytes, default_bytes, budget)
            return self._finish(p, joint_module, default_saved, report, kwargs)
        saved, report = self._plan(joint_module, joint_inputs, budget, default_bytes)
        return self._finish(p, joint_module, saved, report, kwargs)

    # -- the plan --------------------------------------------------------------------------------------

    def _plan(self, joint_module: fx.GraphModule, joint_inputs, budget: int, default_bytes: int):
        from .native import optimize, simulate

        graph, tensor_of = joint_to_memfit(joint_module, joint_inputs)
        backward = tangent_dependent(joint_module.graph)
        first_backward_op = min(graph_op_ids(graph, backward))
        # A spike at the boundary: a scratch tensor as large as the whole
        # step's peak, made and dropped just before the backward, so that the
        # boundary is where the plan's peak is and a lower limit can only be
        # met by holding fewer bytes there (otherwise, on a small model, the
        # parameter gradients' moment in the backward is the peak and the
        # limit says nothing about what is saved).
        spike = int(simulate(graph, device=self.device, costs=self.costs)["peak_bytes"])
        insert_spike(graph, first_backward_op, spike)
        root_of = {t.id: root_of_id(graph, t.id) for t in graph.tensors}
        peak = int(simulate(graph, device=self.device, costs=self.costs)["peak_bytes"])
        limit = peak - (default_bytes - budget)
        rounds = 0
        while True:
            rounds += 1
            if limit <= 0:
                raise Error(f"memfit.partition_fn: cannot save at most {budget} bytes for the backward "
                            f"(the forward saves {default_bytes} without recomputation)")
            try:
                res = optimize(graph, mem_limit=limit, device=self.device, costs=self.costs, swap=False,
                               reorder=False, fission=False, recompute_random=False, deterministic=True,
                               work_budget=self.work_budget, method=self.method)
            except Error as e:
                raise Error(f"memfit.partition_fn: no plan saves at most {budget} bytes for the backward "
                            f"(memory limit {limit} bytes): {e}") from None
            live = live_at(res.plan_json["steps"], graph, first_backward_op, root_of)

            def keep(n: fx.Node) -> bool:
                tid = tensor_of.get(n.name)
                return tid is None or root_of[tid] in live

            saved = choose_saved(joint_module.graph, keep)
            saved_bytes = saved_activation_bytes(saved)
            if saved_bytes <= budget or rounds >= self.rounds:
                break
            limit -= saved_bytes - budget
        if saved_bytes > budget:
            raise Error(f"memfit.partition_fn: after {rounds} plans the backward still saves {saved_bytes} bytes, "
                        f"over the budget of {budget}")
        report = PartitionReport([n.name for n in saved], [], saved_bytes, default_bytes, budget, limit, rounds,
                                 dict(res.optimized))
        return saved, report

    def _finish(self, p, joint_module, saved: List[fx.Node], report: PartitionReport, kwargs):
        fw, bw = extract_modules(p, joint_module, list(saved), kwargs)
        fw_names = {n.name for n in fw.graph.nodes if n.op == "call_function"}
        report.recomputed = [n.name for n in bw.graph.nodes if n.op == "call_function" and n.name in fw_names]
        report.saved = [n.name for n in bw.graph.nodes if n.op == "placeholder" and "tangents" not in n.name]
        self.last = report
        self.reports.append(report)
        return fw, bw


def extract_modules(p, joint_module: fx.GraphModule, saved: List[fx.Node], kwargs):
    """functorch's _extract_fwd_bwd_modules, on torch 1.13 and 2.x signatures."""
    params = inspect.signature(p._extract_fwd_bwd_modules).parameters
    if "num_fwd_outputs" in params:  # torch 2.x
        extra = {"num_fwd_outputs": kwargs["num_fwd_outputs"]}
        if "saved_sym_nodes" in params:
            extra["saved_sym_nodes"] = []
        return p._extract_fwd_bwd_modules(joint_module, saved, **extra)
    return p._extract_fwd_bwd_modules(joint_module, saved)


def root_of_id(graph: Graph, tid: int) -> int:
    while graph.tensors[tid].alias_of is not None:
        tid = graph.tensors[tid].alias_of
    return tid


def insert_spike(graph: Graph, position: int, nbytes: int) -> None:
    """Inserts, before op `position`, an aten.empty of nbytes (f32) that nothing reads."""
    from .graph import Op, Tensor

    tid = len(graph.tensors)
    graph.tensors.append(Tensor(id=tid, name="memfit.boundary_spike", shape=[max(1, (nbytes + 3) // 4)], dtype="f32",
                                role="activation"))
    op = Op(id=position, name="memfit.boundary_spike", type="aten.empty", phase="backward", outputs=[tid],
            attrs={"size": [max(1, (nbytes + 3) // 4)], "dtype": "f32"})
    graph.ops.insert(position, op)
    for i, o in enumerate(graph.ops):
        o.id = i
        for t in o.outputs:
            graph.tensors[t].producer = i


def graph_op_ids(graph: Graph, nodes) -> List[int]:
    names = {n.name for n in nodes if n.op == "call_function"}
    ids = [op.id for op in graph.ops if op.name in names]
    if not ids:
        raise Error("memfit.partition_fn: the joint graph has no backward op (nothing reads tangents_*)")
    return ids


def live_at(steps: Sequence[Dict[str, Any]], graph: Graph, op_id: int, root_of: Dict[int, int]) -> Set[int]:
    """Storage roots the plan holds on the device just before op `op_id`'s compute step."""
    live: Set[int] = set()
    for s in steps:
        kind = s["kind"]
        if kind == "compute" and s["op"] == op_id:
            return live
        if kind in ("compute", "recompute"):
            live.update(root_of[t] for t in graph.ops[s["op"]].outputs)
        elif kind in ("free", "swap_out"):
            live.discard(root_of[s["storage"]])
        elif kind == "swap_in":
            live.add(root_of[s["storage"]])
    raise Error(f"memfit.partition_fn: the plan never computes op {op_id}")


def joint_to_memfit(joint_module: fx.GraphModule, joint_inputs) -> tuple:
    """(memfit Graph, {fx node name: tensor id}) of aot_function's joint graph, its
    shapes from one replay on joint_inputs (primals, tangents); torch's RNG state is
    restored after the replay."""
    primals, tangents = joint_inputs
    flat = list(primals) + list(tangents)
    nodes = list(joint_module.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != len(flat):
        raise Error(f"memfit.partition_fn: the joint graph has {len(placeholders)} inputs, aot_function gave {len(flat)}")
    rec = Recorder(joint_module)
    state = torch.random.get_rng_state()
    try:
        with torch.no_grad():
            rec.run(*flat)
    finally:
        torch.random.set_rng_state(state)
    roles = []
    for n, v in zip(placeholders, flat):
        if "tangents" in str(n.target):
            roles.append("input")
        else:
            roles.append("parameter" if isinstance(v, torch.Tensor) and v.requires_grad else "input")
    out_node = next(n for n in nodes if n.op == "output")
    results = list(out_node.args[0])
    num_fwd = len(results) - len([n for n in placeholders if "tangents" not in str(n.target)])
    if num_fwd < 1:
        raise Error("memfit.partition_fn: the joint graph has no forward output")
    # The parameter gradients are the same whatever is saved (they leave the
    # backward module for .grad): they are not the graph's outputs, so each is
    # freed once made and the plan's peak is that of the activations the
    # partition decides on.
    g = fx_to_graph(joint_module, [n.name for n in placeholders], roles, 0, [], name="aot_joint",
                    recorded=rec.values)
    tensor_of = {t.name: t.id for t in g.tensors}
    for r in results[1:num_fwd]:
        if isinstance(r, fx.Node) and tensor_of.get(r.name) is not None and tensor_of[r.name] not in g.outputs:
            g.outputs.append(tensor_of[r.name])
    # Phases by position: from the first op that reads an incoming gradient on, backward.
    backward = tangent_dependent(joint_module.graph)
    order = {n.name: i for i, n in enumerate(nodes)}
    first = min(order[n.name] for n in backward if n.op == "call_function")
    for op in g.ops:
        base = op.name.split(".")[0] if op.name not in order else op.name
        op.phase = "backward" if order.get(base, len(nodes)) >= first else "forward"
    for t in g.tensors:
        if t.producer is None or t.id in g.outputs or t.role not in ("activation", "gradient"):
            continue
        if t.alias_of is None:
            t.role = "gradient" if g.ops[t.producer].phase == "backward" else "activation"
        else:
            t.role = g.tensors[t.alias_of].role
    return g, tensor_of


def partition_fn(budget_bytes=None, *, ratio: Optional[float] = None, device: str = "cpu", costs=None,
                 work_budget: int = 200, rounds: int = 8, method: str = "heuristic") -> MemfitPartitioner:
    """A partition_fn for functorch.compile.aot_function / aot_module that saves at
    most budget_bytes (bytes or "64MiB") of activations for the backward, or
    `ratio` of what default_partition saves; memfit's optimizer picks what to
    recompute (fastest on `device`, or with the measured `costs` table).
    method: memfit optimize's --method ("heuristic": the remat heuristic's
    portfolio, fast; "auto" adds the Checkmate MILP on graphs of at most 120
    nodes, seconds more per call); work_budget bounds the search by work
    (deterministic plans); rounds: at most this many optimizer calls."""
    return MemfitPartitioner(budget_bytes, ratio=ratio, device=device, costs=costs, work_budget=work_budget,
                             rounds=rounds, method=method)


partitioner = partition_fn


def backend(budget_bytes=None, *, ratio: Optional[float] = None, device: str = "cpu", costs=None, **kwargs):
    """A torch.compile backend (PyTorch 2.x): AOT autograd with memfit's partitioner
    and the FX graphs run as they are. On torch without torch.compile (1.13):
    memfit.Error."""
    if not hasattr(torch, "compile"):
        raise Error(f"memfit.backend needs torch.compile (PyTorch 2.x); this is torch {torch.__version__}: "
                    "use memfit.partition_fn(...) as the partition_fn of functorch.compile.aot_function / aot_module")
    from torch._dynamo.backends.common import aot_autograd  # type: ignore[import-not-found]
    from functorch.compile import make_boxed_func  # type: ignore[import-not-found]

    def boxed(gm, _example_inputs):
        return make_boxed_func(gm.forward)

    return aot_autograd(fw_compiler=boxed, bw_compiler=boxed,
                        partition_fn=partition_fn(budget_bytes, ratio=ratio, device=device, costs=costs, **kwargs))
