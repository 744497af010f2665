"""memfit's C++ side from Python, through the pybind11 module _memfit (no shelling out).

    res = memfit.optimize(graph, mem_limit_ratio=0.6, device="cpu")
    res.plan                      # memfit.plan.Plan (steps, buffers), runnable by memfit.codegen / memfit.execute
    res.plan_json                 # the PLAN.json dict
    res.original, res.optimized   # {"latency_ms", "peak_bytes", "recompute_ms", "swap_out_bytes"}
    memfit.simulate(graph_or_plan, device="h200")   # {"latency_ms", "peak_bytes", ...}
    memfit.plan_offsets(graph, device="a100")      # Plan of program order with arena offsets

Graphs may be a memfit.Graph, a graph dict, a path or JSON text; plans a
memfit.plan.Plan, a plan dict or a path. Errors of the C++ side are
memfit.Error, the same class as the Python side's, naming the field or op.

The module is found as memfit._memfit (an installed package) or _memfit (the
build tree: PYTHONPATH=python:build/python). Everything else in memfit
(capture, generated steps, the executor) works without it; native_available()
says whether it is there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

from .graph import Error, Graph, OpFlags, to_dict
from .plan_file import Plan, is_plan, load_plan

_MODULE: Any = None


def _native():
    """The _memfit module, or memfit.Error saying it is not built."""
    global _MODULE
    if _MODULE is None:
        try:
            from . import _memfit as module  # type: ignore[attr-defined]
        except ImportError:
            try:
                import _memfit as module  # type: ignore[no-redef]
            except ImportError:
                raise Error("memfit's native module (_memfit) is not available: install the package with "
                            "`pip install .` or put build/python on PYTHONPATH; without it, memfit.fit runs "
                            "program order or a plan made elsewhere (plan=...)") from None
        _MODULE = module
    return _MODULE


def native_available() -> bool:
    try:
        _native()
    except Error:
        return False
    return True


def _graph_text(graph: Union[Graph, Dict[str, Any], str, os.PathLike]) -> str:
    if isinstance(graph, Graph):
        return json.dumps(to_dict(graph))
    if isinstance(graph, dict):
        return json.dumps(graph)
    if isinstance(graph, str) and graph.lstrip().startswith("{"):
        return graph
    path = os.fspath(graph)
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise Error(f"{path}: cannot read: {e.strerror}") from None


def ensure_op_flags(g: Graph, why: str = "this") -> None:
    """Fills the flags of a graph that has none (a version 1 file, a Python capture)
    from the C++ op registry, their only source (memfit.graph's docstring);
    memfit.Error when the native module is not there to ask."""
    if g.has_flags():
        return
    try:
        module = _native()
    except Error:
        raise Error(f"graph '{g.name}' has no op flags (a version 1 file, or captured in Python) and memfit's "
                    f"native module, which knows them, is not available; {why} needs them: use a graph or plan "
                    f"written by memfit's C++ side (memfit optimize/plan, memfit.optimize), or build the native "
                    f"module") from None
    found = module.op_flags(json.dumps(to_dict(g)))
    for op, f in zip(g.ops, found):
        op.flags = OpFlags(f["random"], f["inplace"], f["view"], tuple(f["mutates"]))


def _plan_text(plan) -> str:
    if isinstance(plan, Plan):
        if plan.raw:
            return json.dumps(plan.raw)
        return json.dumps({"format": "memfit.plan", "version": 2, "graph": to_dict(plan.graph),
                           "steps": plan.steps})
    return _graph_text(plan)


def _costs_path(costs) -> str:
    if costs is None:
        return ""
    return os.fspath(costs)


@dataclass
class OptimizeResult:
    plan: Any  # memfit.plan.Plan
    plan_json: Dict[str, Any]
    original: Dict[str, Any]
    optimized: Dict[str, Any]
    figures: Dict[str, Any] = field(default_factory=dict)  # all of the C++ result's figures

    @property
    def overhead(self) -> float:
        return self.figures.get("overhead", 0.0)


def parse_bytes(value: Union[int, float, str]) -> int:
    """A byte count: an int, or text such as "8GiB", "512MB", "1e9"."""
    if isinstance(value, bool):
        raise Error(f"mem_limit: {value!r} is not a byte count")
    if isinstance(value, (int, float)):
        number, scale = float(value), 1.0
    else:
        text = str(value).strip()
        units = {"": 1, "b": 1, "k": 1024, "kib": 1024, "m": 1024 ** 2, "mib": 1024 ** 2, "g": 1024 ** 3,
                 "gib": 1024 ** 3, "t": 1024 ** 4, "tib": 1024 ** 4, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
        i = len(text)
        while i > 0 and text[i - 1].isalpha():
            i -= 1
        unit = text[i:].lower()
        if unit not in units:
            raise Error(f"mem_limit: unknown unit '{text[i:]}' in '{value}' (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")
        try:
            number = float(text[:i])
        except ValueError:
            raise Error(f"mem_limit: '{value}' is not a byte count (e.g. 8000000000, 8GiB, 512MB)") from None
        scale = units[unit]
    total = number * scale
    if not (1 <= total < 9e18):
        raise Error(f"mem_limit: {value!r} is out of range (1 byte to 9e18)")
    return int(total)


def optimize(graph, *, mem_limit=None, mem_limit_ratio: Optional[float] = None,
             lat_limit_ratio: Optional[float] = None, device: str = "a100", costs=None, time_budget: float = 10.0,
             work_budget: Optional[int] = None, deterministic: bool = False, method: str = "auto",
             swap: bool = True, recompute: bool = True, reorder: bool = True,
             recompute_random: bool = True, fission: bool = True) -> OptimizeResult:
    """memfit optimize in-process: the fastest plan under exactly one of mem_limit
    (bytes or "8GiB"), mem_limit_ratio (of the unoptimized peak) or
    lat_limit_ratio. device: a built-in profile name or a device .json; costs: a
    measured cost table path. deterministic (or work_budget): bound the search
    by work instead of time, so the plan does not depend on the machine's load.
    fission: also try variants of the graph with ops split along a dimension
    (the CLI's default; fission=False is --no-fission).
    An unreachable limit is memfit.Error naming the smallest memory reached."""
    m = _native()
    limit_bytes = parse_bytes(mem_limit) if mem_limit is not None else None
    r = m.optimize(_graph_text(graph), limit_bytes, mem_limit_ratio, lat_limit_ratio, str(device),
                   _costs_path(costs), float(time_budget), work_budget, method, swap, recompute, reorder,
                   recompute_random, fission, deterministic)
    plan_json = json.loads(r["plan"])
    figures = {k: v for k, v in r.items() if k != "plan"}
    return OptimizeResult(load_plan(plan_json), plan_json, dict(r["original"]), dict(r["optimized"]), figures)


def simulate(graph_or_plan, device: str = "a100", costs=None) -> Dict[str, Any]:
    """The simulator's figures for a plan's steps, or a graph in program order:
    latency_ms, peak_bytes, compute_busy_ms, copy_busy_ms."""
    text = _plan_text(graph_or_plan) if is_plan(graph_or_plan) else _graph_text(graph_or_plan)
    return dict(_native().simulate(text, device=str(device), costs=_costs_path(costs)))


def plan_offsets(graph, device: str = "a100", time_limit: float = 5.0):
    """memfit plan in-process: program order with every storage placed at an arena
    offset (checked); a memfit.plan.Plan (its raw dict holds the PLAN.json)."""
    return load_plan(json.loads(_native().plan(_graph_text(graph), device=str(device), time_limit=time_limit)))
