"""Per-op costs for live DTR: a deterministic estimate from the graph (bytes read and
written plus 2 x multiply-adds of matmuls and convolutions), a memfit cost
table, a dict op name -> seconds, or "measured" (each op's first run, timed by
the runtime).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Mapping, Optional, Tuple

from ..graph import Error, Graph, JsonNode, Op
from ..runner import tensor_nbytes
from .analysis import _Analysis

# Ops costed as 2 x multiply-adds on top of their bytes by the estimate.
_MATMULS = ("aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm")
_CONVOLUTIONS = ("aten.convolution", "aten._convolution", "aten.convolution_backward")


def _is_view_op(g: Graph, a: _Analysis, op: Op) -> bool:
    return bool(op.outputs) and not a.writes[op.id] and all(g.tensors[t].alias_of is not None for t in op.outputs)


def estimate_cost(g: Graph, a: _Analysis, op: Op) -> float:
    """Bytes of the op's inputs and new outputs, plus 2 x multiply-adds of matmuls and convolutions;
    0 for a view op."""
    if _is_view_op(g, a, op):
        return 0.0
    cost = sum(tensor_nbytes(g, t) for t in dict.fromkeys(op.inputs))
    cost += sum(a.size_bytes[t] for t in dict.fromkeys(op.outputs) if a.root[t] == t)
    shapes = [g.tensors[t].shape for t in op.inputs]
    if op.type in _MATMULS and op.outputs:
        a_shape = shapes[-2]
        cost += 2 * math.prod(g.tensors[op.outputs[0]].shape) * (a_shape[-1] if a_shape else 1)
    elif op.type in _CONVOLUTIONS and len(shapes) >= 2:
        if op.type == "aten.convolution_backward":
            # grad_output, input, weight: each of grad_input and grad_weight costs about a convolution.
            grad_out, weight = shapes[0], shapes[2]
            mask = op.attrs.get("output_mask", [1, 1, 0])
            cost += 2 * math.prod(grad_out) * math.prod(weight[1:]) * sum(1 for m in mask[:2] if m)
        elif op.outputs:
            cost += 2 * math.prod(g.tensors[op.outputs[0]].shape) * math.prod(shapes[1][1:])
    return float(cost)


def _table_costs(g: Graph, a: _Analysis, table: Dict[str, Any], source: str) -> Dict[int, float]:
    from ..profile import cost_key
    root = JsonNode(table, source)
    if not isinstance(table, dict) or table.get("format") != "memfit.costs":
        raise Error(f"{source}: not a memfit cost table (field 'format' must be \"memfit.costs\")")
    by_key = {}
    for e in (root.get("entries").elements() if "entries" in table else []):
        # The fields read here, checked as src/sim/cost_model.cc checks them.
        overload = e.find("overload")
        shapes = tuple(tuple(s.ints()) for s in e.get("input_shapes").elements())
        latency = e.get("latency_us")
        if not latency.is_number() or latency.value < 0 or not math.isfinite(latency.value):
            latency.fail(f"must be a non-negative number, got {latency.describe()}")
        key = (e.get("op").string(), overload.string() if overload is not None else "default", shapes,
               e.get("dtype").string())
        by_key[key] = float(latency.value) * 1e-6
    costs = {}
    for op in g.ops:
        key = cost_key(g, op)
        if key in by_key:
            costs[op.id] = by_key[key]
        elif _is_view_op(g, a, op):
            costs[op.id] = 0.0
        else:
            raise Error(f"{source}: no entry for op '{op.name}' ({op.qualified_type}, input shapes "
                        f"{[list(s) for s in key[2]]}, {key[3]})")
    return costs


def _resolve_costs(g: Graph, a: _Analysis, costs) -> Tuple[Optional[Dict[int, float]], str]:
    """Per-op costs and their unit; None for "measured" (filled in at each op's first run)."""
    if costs is None:
        return {op.id: estimate_cost(g, a, op) for op in g.ops}, "estimate"
    if isinstance(costs, str) and costs == "measured":
        return None, "s"
    if isinstance(costs, Mapping):
        if costs.get("format") == "memfit.costs":
            return _table_costs(g, a, dict(costs), "<costs>"), "s"
        known = {op.name for op in g.ops}
        unknown = sorted(k for k in costs if k not in known)
        if unknown:
            raise Error(f"costs: graph '{g.name}' has no op named {', '.join(repr(k) for k in unknown[:5])}")
        out = {}
        for op in g.ops:
            if op.name in costs:
                value = costs[op.name]
                if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                    raise Error(f"costs['{op.name}']: must be a non-negative number of seconds, got {value!r}")
                out[op.id] = float(value)
            elif _is_view_op(g, a, op):
                out[op.id] = 0.0
            else:
                raise Error(f"costs: no cost for op '{op.name}' ({op.qualified_type})")
        return out, "s"
    if isinstance(costs, (str, os.PathLike)):
        try:
            with open(costs) as f:
                table = json.load(f)
        except (OSError, ValueError) as e:
            raise Error(f"{costs}: cannot read cost table: {e}") from None
        return _table_costs(g, a, table, str(costs)), "s"
    raise Error(f"costs: expected None, \"measured\", a dict op name -> seconds or a cost table path, "
                f"got {type(costs).__name__}")
