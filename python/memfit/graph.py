"""The memfit JSON graph format, read into plain Python objects.

A graph file (``memfit zoo ... -o G.json``, ``memfit.capture``) holds tensors
(id, name, shape, dtype, role, alias_of) and ops in program order (type,
overload, phase, inputs, outputs, attrs). This module only reads and writes
that format; it knows nothing about torch.

Op flags. Version 2 files, which the C++ side writes (every graph and
PLAN.json from the memfit CLI, memfit.optimize and memfit.plan_offsets),
carry per op the flags of memfit's op registry (src/ir/registry.h
ComputeOpFlags), the only place they are decided: ``random`` (a rerun must
replay the RNG), ``inplace`` (an output aliasing an input is that input
written in place), ``view`` and ``mutates`` (inputs written without an output
of their own, such as BatchNorm's running statistics). They are read into
``Op.flags`` (an OpFlags). A version 1 file, or a graph captured in Python,
has none (``Op.flags`` is None); memfit.native.ensure_op_flags fills them from
the registry through the native module when it is there. Without the native
module such a graph still runs (memfit.run, plans without recomputations,
program order), but what reruns an op (a plan's recompute steps, memfit.dtr)
raises memfit.Error asking for a graph written by the C++ side.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

FORMAT = "memfit.graph"
VERSION = 2  # written when every op has flags; version 1 (no flags) otherwise
OLDEST_VERSION = 1

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


@dataclass(frozen=True)
class OpFlags:
    """What the registry says an op does besides computing fresh outputs (see the module docstring)."""

    random: bool = False
    inplace: bool = False
    view: bool = False
    mutates: Tuple[int, ...] = ()  # input positions

    def to_dict(self) -> Dict[str, Any]:
        j: Dict[str, Any] = {}
        for key in ("random", "inplace", "view"):
            if getattr(self, key):
                j[key] = True
        if self.mutates:
            j["mutates"] = list(self.mutates)
        return j

    @staticmethod
    def from_dict(j: Dict[str, Any], where: str) -> "OpFlags":
        if not isinstance(j, dict) or set(j) - {"random", "inplace", "view", "mutates"}:
            raise Error(f"{where}: must be an object with random, inplace, view, mutates")
        for key in ("random", "inplace", "view"):
            if not isinstance(j.get(key, False), bool):
                raise Error(f"{where}.{key}: must be true or false")
        mutates = j.get("mutates", [])
        if not isinstance(mutates, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in mutates):
            raise Error(f"{where}.mutates: must be a list of input positions")
        return OpFlags(bool(j.get("random")), bool(j.get("inplace")), bool(j.get("view")), tuple(mutates))


NO_FLAGS = OpFlags()


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
    flags: Optional[OpFlags] = None  # None: not known (version 1 file, Python capture)

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

    def has_flags(self) -> bool:
        """True when every op's flags are known (a version 2 file, or filled by the native module)."""
        return all(op.flags is not None for op in self.ops)


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
    version = root.get("version")
    if not isinstance(version, int) or not OLDEST_VERSION <= version <= VERSION:
        raise Error(f"{source}: unsupported version {version!r} (this reads versions {OLDEST_VERSION} to {VERSION})")
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
            flags=OpFlags.from_dict(o.get("flags", {}), f"{source}: ops[{i}].flags") if version >= 2 else None,
        )
        for k in op.flags.mutates if op.flags else ():
            if not 0 <= k < len(op.inputs):
                raise Error(f"{source}: ops[{i}].flags.mutates: input position {k} is out of range "
                            f"(the op has {len(op.inputs)} inputs)")
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
    """The JSON dict: version 2 with every op's flags when they are all known, else version 1."""
    with_flags = g.has_flags()
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
        if with_flags and o.flags.to_dict():
            j["flags"] = o.flags.to_dict()
        ops.append(j)
    return {
        "format": FORMAT,
        "version": VERSION if with_flags else OLDEST_VERSION,
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
