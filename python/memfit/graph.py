"""The memfit JSON graph format, read into plain Python objects.

A graph file (``memfit zoo ... -o G.json``, ``memfit.capture``) holds tensors
(id, name, shape, dtype, role, alias_of) and ops in program order (type,
overload, phase, inputs, outputs, attrs). This module only reads and writes
that format; it knows nothing about torch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

FORMAT = "memfit.graph"
VERSION = 1

# Roles of tensors that exist before the step (no producer op).
SOURCE_ROLES = ("parameter", "buffer", "input", "optimizer_state")


class Error(ValueError):
    """A user-facing memfit error (bad graph, missing input, shape mismatch), from
    Python or from the native module (which raises this class too)."""


@dataclass
class Tensor:
    id: int
    name: str
    shape: List[int]
    dtype: str = "f32"
    role: str = "activation"
    alias_of: Optional[int] = None
    strides: List[int] = field(default_factory=list)
    storage_offset: int = 0
    producer: Optional[int] = None  # op id; None for sources


@dataclass
class Op:
    id: int
    name: str
    type: str  # "aten.add"
    overload: str = ""  # "" means "default"
    phase: str = "forward"
    inputs: List[int] = field(default_factory=list)
    outputs: List[int] = field(default_factory=list)
    attrs: Dict[str, Any] = field(default_factory=dict)

    @property
    def qualified_type(self) -> str:
        return f"{self.type}.{self.overload}" if self.overload else self.type


@dataclass
class Graph:
    name: str = ""
    metadata: Dict[str, str] = field(default_factory=dict)
    tensors: List[Tensor] = field(default_factory=list)
    ops: List[Op] = field(default_factory=list)
    outputs: List[int] = field(default_factory=list)

    def tensor_by_name(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise Error(f"graph '{self.name}' has no tensor named '{name}'")

    def storage_root(self, tid: int) -> int:
        while self.tensors[tid].alias_of is not None:
            tid = self.tensors[tid].alias_of
        return tid

    def is_source(self, tid: int) -> bool:
        return self.tensors[tid].producer is None


def _decode_attr(value: Any) -> Any:
    # Non-finite doubles travel as {"float": "inf"}, float lists as {"floats": [...]}.
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return float(value["float"])
        if set(value) == {"floats"}:
            return [_decode_attr(v) if isinstance(v, dict) else float(v) for v in value["floats"]]
    return value


def _encode_attr(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, float) for v in value):
            items = [_encode_attr(float(v)) for v in value]
            # A list of floats that print as integers would read back as ints.
            return {"floats": items}
        return list(value)
    return value


def from_dict(root: Dict[str, Any], source: str = "<dict>") -> Graph:
    if root.get("format") != FORMAT:
        raise Error(f"{source}: not a memfit graph (format is {root.get('format')!r}, expected '{FORMAT}')")
    if root.get("version") != VERSION:
        raise Error(f"{source}: unsupported version {root.get('version')!r} (this reads version {VERSION})")
    g = Graph(name=root.get("name", ""), metadata=dict(root.get("metadata", {})), outputs=list(root.get("outputs", [])))
    for i, t in enumerate(root["tensors"]):
        g.tensors.append(
            Tensor(
                id=i,
                name=t["name"],
                shape=list(t["shape"]),
                dtype=t["dtype"],
                role=t["role"],
                alias_of=t.get("alias_of"),
                strides=list(t.get("strides", [])),
                storage_offset=t.get("storage_offset", 0),
            )
        )
    for i, o in enumerate(root["ops"]):
        op = Op(
            id=i,
            name=o["name"],
            type=o["type"],
            overload=o.get("overload", ""),
            phase=o.get("phase", "forward"),
            inputs=list(o["inputs"]),
            outputs=list(o["outputs"]),
            attrs={k: _decode_attr(v) for k, v in o.get("attrs", {}).items()},
        )
        for tid in op.inputs + op.outputs:
            if not 0 <= tid < len(g.tensors):
                raise Error(f"{source}: op '{op.name}' refers to tensor id {tid} (the graph has {len(g.tensors)})")
        for tid in op.outputs:
            g.tensors[tid].producer = i
        g.ops.append(op)
    return g


def load(graph: Union[str, os.PathLike, Dict[str, Any], Graph]) -> Graph:
    """A Graph from a path, a parsed JSON dict, or a Graph (returned as is)."""
    if isinstance(graph, Graph):
        return graph
    if isinstance(graph, dict):
        return from_dict(graph)
    path = os.fspath(graph)
    try:
        with open(path) as f:
            root = json.load(f)
    except OSError as e:
        raise Error(f"{path}: cannot read: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise Error(f"{path}: invalid JSON: {e}") from None
    return from_dict(root, path)


def to_dict(g: Graph) -> Dict[str, Any]:
    tensors = []
    for t in g.tensors:
        j: Dict[str, Any] = {"id": t.id, "name": t.name, "shape": list(t.shape), "dtype": t.dtype, "role": t.role}
        if t.alias_of is not None:
            j["alias_of"] = t.alias_of
        if t.strides:
            j["strides"] = list(t.strides)
        if t.storage_offset:
            j["storage_offset"] = t.storage_offset
        tensors.append(j)
    ops = []
    for o in g.ops:
        j = {"id": o.id, "name": o.name, "type": o.type}
        if o.overload:
            j["overload"] = o.overload
        j.update(phase=o.phase, inputs=list(o.inputs), outputs=list(o.outputs))
        if o.attrs:
            j["attrs"] = {k: _encode_attr(v) for k, v in sorted(o.attrs.items())}
        ops.append(j)
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": g.name,
        "metadata": dict(sorted(g.metadata.items())),
        "tensors": tensors,
        "ops": ops,
        "outputs": list(g.outputs),
    }


def save(g: Graph, path: Union[str, os.PathLike]) -> None:
    with open(path, "w") as f:
        json.dump(to_dict(g), f, indent=1)
        f.write("\n")
