"""The plan file (PLAN.json, ``memfit plan G.json -o PLAN.json``; src/plan/steps.h,
docs/plan-format.md) read into Python: a graph, its steps (compute, recompute,
swap_out, swap_in, free) and, for a plan with arena offsets, the buffers of
each storage's stays on the device. Knows nothing about torch: memfit.plan
runs plans, memfit.codegen compiles them, memfit.native makes them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .graph import Error, Graph, JsonNode, load, read

PLAN_FORMAT = "memfit.plan"

# Roles never freed by a plan: their final values are copied back to caller tensors after an arena run.
PERSISTENT_ROLES = ("parameter", "buffer", "optimizer_state")


@dataclass
class Buffer:
    storage: int
    offset: int
    size: int
    start: int
    end: int


@dataclass
class Plan:
    graph: Graph
    steps: List[Dict[str, Any]]
    # By storage root, the buffers of its instances sorted by start step;
    # workspace buffers are left out.
    buffers: Dict[int, List[Buffer]]
    arena_bytes: int = 0
    simulated: Optional[Dict[str, Any]] = None
    raw: Dict[str, Any] = field(default_factory=dict)
    version: int = 2

    def buffer_at(self, storage: int, step: int) -> Optional[Buffer]:
        """The buffer of `storage` (a root) for an instance created at `step`:
        the one whose [start, end) covers it (version 1: its only buffer);
        None when the storage has no buffer at all."""
        found = self.buffers.get(storage)
        if not found:
            return None
        if self.version == 1:
            return found[0]
        for b in found:
            if b.start <= step < b.end:
                return b
        raise Error(f"steps[{step}]: storage '{self.graph.tensors[storage].name}' is placed on the device at "
                    f"step {step}, but none of its buffers covers that step")


def is_plan(value) -> bool:
    """True for a Plan, a plan dict, or a path to a PLAN.json."""
    if isinstance(value, Plan):
        return True
    if isinstance(value, dict):
        return value.get("format") == PLAN_FORMAT
    if isinstance(value, (str, os.PathLike)):
        try:
            with open(value) as f:
                head = f.read(4096)
        except OSError:
            return False
        return f'"format":"{PLAN_FORMAT}"' in "".join(head.split())
    return False


def load_plan(plan) -> Plan:
    """Reads a plan from a path, a dict or a Plan; memfit.Error names the file and field."""
    if isinstance(plan, Plan):
        return plan
    source = "<dict>"
    if isinstance(plan, (str, os.PathLike)):
        source = str(plan)
        try:
            with open(plan) as f:
                plan = json.load(f)
        except (OSError, ValueError) as e:
            raise Error(f"{source}: cannot read plan: {e}") from None
    return plan_from_dict(plan, source)


def plan_from_dict(plan: Dict[str, Any], source: str = "<dict>") -> Plan:
    """A Plan from the parsed JSON of a plan file; errors name `source` and the field."""
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise Error(f"{source}: not a memfit plan (field 'format' must be \"{PLAN_FORMAT}\")")
    version = plan.get("version", 2)
    if version not in (1, 2):
        raise Error(f"{source}: version: unsupported version {version!r} (1 or 2)")
    root = JsonNode(plan, source)
    g = read(root.get("graph"))
    steps = plan["steps"]
    for s in root.get("steps").elements():
        kind = s.get("kind").value if isinstance(s.value, dict) and "kind" in s.value else None
        if kind in ("compute", "recompute"):
            s.get("op").id(len(g.ops), "op")
        elif kind in ("swap_out", "swap_in", "free"):
            s.get("storage").id(len(g.tensors))
        else:
            s.fail(f"unknown step kind {kind!r} (compute, recompute, swap_out, swap_in, free)")
    buffers: Dict[int, List[Buffer]] = {}
    for b in (root.get("buffers").elements() if "buffers" in plan else []):
        if b.find("storage") is None:
            continue  # an op's workspace: the executor has none to place
        root_id = g.storage_root(b.get("storage").id(len(g.tensors)))
        new = Buffer(root_id, *(b.get(k).int() for k in ("offset", "size", "start", "end")))
        for other in buffers.get(root_id, []):
            # Version 1: one buffer per storage; version 2: one per instance, disjoint in steps.
            if version == 1 or (other.start < new.end and new.start < other.end):
                b.fail(f"storage '{g.tensors[root_id].name}' is placed twice over "
                       f"steps [{max(other.start, new.start)}, {min(other.end, new.end)})")
        buffers.setdefault(root_id, []).append(new)
    for found in buffers.values():
        found.sort(key=lambda b: b.start)
    arena_bytes = root.get("arena_bytes").int() if "arena_bytes" in plan else 0
    return Plan(g, steps, buffers, arena_bytes, plan.get("simulated"), plan, version)


def program_order_plan(graph) -> Plan:
    """The plan `memfit plan` writes for program order, without buffers: every op
    once, each storage freed right after its last use (parameters, buffers,
    optimizer states and graph outputs' storages never; a storage nobody reads
    right after its producer). Frees after one op are sorted by storage id."""
    g = load(graph)
    root = [g.storage_root(t.id) for t in g.tensors]
    last: Dict[int, int] = {}
    for op in g.ops:
        for tid in list(op.inputs) + list(op.outputs):
            last[root[tid]] = op.id
    pinned = {root[t] for t in g.outputs}
    pinned |= {t.id for t in g.tensors if t.alias_of is None and t.role in PERSISTENT_ROLES}
    frees: Dict[int, List[int]] = {}
    for r, step in last.items():
        if r not in pinned:
            frees.setdefault(step, []).append(r)
    steps: List[Dict[str, Any]] = []
    for op in g.ops:
        steps.append({"kind": "compute", "op": op.id})
        steps.extend({"kind": "free", "storage": r} for r in sorted(frees.get(op.id, [])))
    return Plan(g, steps, {})
