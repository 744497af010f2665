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


class NoPlanFits(Error):
    """No plan fits the memory limit, and the optimizer found the smallest
    memory it reaches: `reached_bytes` (the native module raises it; not for a
    limit below the parameters' bytes or one the alignment alone rules out)."""

    def __init__(self, message: str = "", reached_bytes: Optional[int] = None):
        super().__init__(message)
        self.reached_bytes = reached_bytes


# Vocabulary of the format (src/ir/dtype.cc, src/ir/tensor.cc, src/ir/op.cc).
DTYPE_NAMES = ("f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "bool")
ROLES = ("parameter", "buffer", "input", "activation", "gradient", "optimizer_state", "output")
PHASES = ("forward", "backward", "optimizer")

_INT64 = (-(1 << 63), (1 << 63) - 1)
_MAX_SHOWN_CHARS = 60  # as src/util/json.cc shows values in messages


class JsonNode:
    """One value of a parsed JSON document and its path ("ops[3].inputs[1]"): the
    checked reading of src/util/json.h JsonNode, with its messages, so that every
    malformed field is a memfit.Error "<source>: <path>: <what is wrong>"."""

    def __init__(self, value: Any, source: str, path: str = ""):
        self.value, self.source, self.path = value, source, path

    def fail(self, message: str):
        raise Error(f"{self.source}: {self.path or 'top level'}: {message}")

    def describe(self) -> str:
        text = json.dumps(self.value, allow_nan=True)
        if isinstance(self.value, (list, dict)) and (len(text) > 2 * _MAX_SHOWN_CHARS or any(
                isinstance(v, (list, dict)) for v in (self.value.values() if isinstance(self.value, dict) else self.value))):
            kind = ("an array", "elements") if isinstance(self.value, list) else ("an object", "fields")
            return f"{kind[0]} of {len(self.value)} {kind[1]}"
        return text if len(text) <= _MAX_SHOWN_CHARS else text[:_MAX_SHOWN_CHARS] + "..."

    def _expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.fail(f"expected {what}, got {self.describe()}")

    def expect_fields(self, *allowed: str) -> None:
        self._expect(isinstance(self.value, dict), "an object")
        for key in self.value:
            if key not in allowed:
                self.fail(f"unknown field '{key}'")

    def find(self, key: str) -> Optional["JsonNode"]:
        self._expect(isinstance(self.value, dict), "an object")
        if key not in self.value:
            return None
        return JsonNode(self.value[key], self.source, f"{self.path}.{key}" if self.path else key)

    def get(self, key: str) -> "JsonNode":
        node = self.find(key)
        if node is None:
            self.fail(f"missing field '{key}'")
        return node

    def fields(self) -> List[Tuple[str, "JsonNode"]]:
        self._expect(isinstance(self.value, dict), "an object")
        return [(k, self.find(k)) for k in self.value]

    def elements(self) -> List["JsonNode"]:
        self._expect(isinstance(self.value, list), "an array")
        return [JsonNode(v, self.source, f"{self.path}[{i}]") for i, v in enumerate(self.value)]

    def is_int(self) -> bool:
        return isinstance(self.value, int) and not isinstance(self.value, bool)

    def is_number(self) -> bool:
        return self.is_int() or isinstance(self.value, float)

    def string(self) -> str:
        self._expect(isinstance(self.value, str), "a string")
        return self.value

    def boolean(self) -> bool:
        self._expect(isinstance(self.value, bool), "true or false")
        return self.value

    def int(self) -> int:
        self._expect(self.is_int(), "an integer")
        if not _INT64[0] <= self.value <= _INT64[1]:
            self.fail(f"integer is too large: {self.describe()}")
        return self.value

    def ints(self) -> List[int]:
        return [e.int() for e in self.elements()]

    def id(self, limit: int, what: str = "tensor") -> int:
        v = self.int()
        if not 0 <= v < limit:
            self.fail(f"{what} id {v} is out of range (the graph has {limit})")
        return v

    def choice(self, allowed: Tuple[str, ...], what: str) -> str:
        v = self.string()
        if v not in allowed:
            self.fail(f"unknown {what} '{v}' (one of {', '.join(allowed)})")
        return v


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
    values: List[int] = field(default_factory=list)  # a small integer source's known elements (docs/graph-format.md)
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
    def read(j: "JsonNode", num_inputs: int) -> "OpFlags":
        """An op's "flags" field (version 2), checked as src/io/graph_json.cc CheckFlags does."""
        j.expect_fields("random", "inplace", "view", "mutates")
        set_flags = {key: node.boolean() for key in ("random", "inplace", "view") if (node := j.find(key)) is not None}
        mutates = []
        if (node := j.find("mutates")) is not None:
            for e in node.elements():
                k = e.int()
                if not 0 <= k < num_inputs:
                    e.fail(f"input position {k} is out of range (the op has {num_inputs} inputs)")
                mutates.append(k)
        return OpFlags(**set_flags, mutates=tuple(mutates))


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


def _tagged_float(node: JsonNode) -> float:
    # A number, or a non-finite double tagged as {"float": "inf" | "-inf" | "nan"}.
    if node.is_number():
        return float(node.value)
    if isinstance(node.value, dict) and set(node.value) == {"float"} and node.value["float"] in ("inf", "-inf", "nan"):
        return float(node.value["float"])
    node.fail(f"expected a number, got {node.describe()}")


def _decode_attr(node: JsonNode) -> Any:
    # As src/io/graph_json.cc Attr: null, a bool, a number, a string, a list of
    # numbers, a tagged non-finite float, or a tagged float list {"floats": [...]}.
    v = node.value
    if v is None or isinstance(v, (bool, str, float)):
        return v
    if node.is_int():
        return node.int()
    if isinstance(v, list):
        for e in node.elements():
            if not e.is_number():
                e.fail("list attributes hold numbers only")
        return [e.int() if e.is_int() else e.value for e in node.elements()]
    if isinstance(v, dict) and set(v) == {"floats"}:
        return [_tagged_float(e) for e in node.get("floats").elements()]
    return _tagged_float(node)


def _read_tensor(j: JsonNode, i: int, num_tensors: int) -> Tensor:
    j.expect_fields("id", "name", "shape", "dtype", "role", "alias_of", "strides", "storage_offset", "values")
    tid = j.find("id")
    if tid is not None and tid.int() != i:
        tid.fail(f"tensor ids must equal their position ({i})")
    t = Tensor(id=i, name=j.get("name").string(), shape=j.get("shape").ints(),
               dtype=j.get("dtype").choice(DTYPE_NAMES, "dtype"), role=j.get("role").choice(ROLES, "role"))
    if not t.name:
        j.get("name").fail("a tensor's name must not be empty")
    if any(d < 0 for d in t.shape):
        j.get("shape").fail(f"negative dimension in shape {t.shape}")
    alias = j.find("alias_of")
    if alias is not None:
        t.alias_of = alias.id(num_tensors)
        # As ir/validate.cc: a view's base is an earlier tensor, so alias chains end (no cycle).
        if t.alias_of >= i:
            alias.fail(f"tensor '{t.name}' aliases {'itself' if t.alias_of == i else f'tensor {t.alias_of}'}"
                       " (a view's base must be an earlier tensor)")
    strides = j.find("strides")
    if strides is not None:
        t.strides = strides.ints()
        if t.strides and len(t.strides) != len(t.shape):
            strides.fail(f"{len(t.strides)} strides for rank {len(t.shape)}")
    offset = j.find("storage_offset")
    if offset is not None:
        t.storage_offset = offset.int()
        if t.storage_offset < 0:
            offset.fail("must not be negative")
    values = j.find("values")
    if values is not None:
        t.values = values.ints()
        if t.values and len(t.values) != math.prod(t.shape):
            values.fail(f"{len(t.values)} values for {math.prod(t.shape)} elements")
        if t.values and t.dtype in ("f32", "f16", "bf16", "f64"):
            values.fail("only an integer or bool tensor may have values")
    return t


def _read_op(j: JsonNode, i: int, num_tensors: int, has_flags: bool) -> Op:
    j.expect_fields("id", "name", "type", "overload", "phase", "inputs", "outputs", "attrs", *(("flags",) if has_flags else ()))
    oid = j.find("id")
    if oid is not None and oid.int() != i:
        oid.fail(f"op ids must equal their position ({i})")
    op = Op(id=i, name=j.get("name").string(), type=j.get("type").string(),
            inputs=[e.id(num_tensors) for e in j.get("inputs").elements()],
            outputs=[e.id(num_tensors) for e in j.get("outputs").elements()])
    if not op.name or not op.type:
        j.get("name" if not op.name else "type").fail("must not be empty")
    overload, phase, attrs = j.find("overload"), j.find("phase"), j.find("attrs")
    if overload is not None:
        op.overload = overload.string()
    if phase is not None:
        op.phase = phase.choice(PHASES, "phase")
    if attrs is not None:
        op.attrs = {k: _decode_attr(v) for k, v in attrs.fields()}
    if has_flags:
        flags = j.find("flags")
        op.flags = OpFlags.read(flags, len(op.inputs)) if flags is not None else NO_FLAGS
    return op


def from_dict(root: Dict[str, Any], source: str = "<dict>") -> Graph:
    """A Graph from the parsed JSON of a graph file; errors name `source` (see read)."""
    return read(JsonNode(root, source))


def read(r: JsonNode) -> Graph:
    """A Graph from a JSON node (a file's root, or a PLAN.json's "graph"), read
    with the C++ reader's rules (src/io/graph_json.cc): unknown fields, wrong
    types, missing fields and out-of-range ids raise memfit.Error naming the
    source and the field's path ("G.json: tensors[3].alias_of: ..."). Of
    ir/validate.cc's checks it makes those that reading in Python relies on (a
    view's base is an earlier tensor, so alias chains end; names are unique; no
    tensor is produced twice; no negative dimension); the C++ side checks the
    rest when it reads the graph."""
    fmt = r.find("format") if isinstance(r.value, dict) else None
    if fmt is not None and fmt.value == "memfit.plan":
        fmt.fail("this is a plan (memfit.plan), not a graph (memfit.graph)")
    if fmt is None or fmt.value != FORMAT:
        r.fail(f"not a memfit graph (format is {None if fmt is None else fmt.value!r}, expected '{FORMAT}')")
    r.expect_fields("format", "version", "name", "metadata", "tensors", "ops", "outputs")
    vnode = r.get("version")
    version = vnode.int()
    if not OLDEST_VERSION <= version <= VERSION:
        vnode.fail(f"unsupported version {version!r} (this reads versions {OLDEST_VERSION} to {VERSION})")
    g = Graph()
    if r.find("name") is not None:
        g.name = r.get("name").string()
    if r.find("metadata") is not None:
        g.metadata = {k: v.string() for k, v in r.get("metadata").fields()}
    tensors, ops = r.get("tensors").elements(), r.get("ops").elements()
    names: Dict[str, int] = {}
    for i, j in enumerate(tensors):
        t = _read_tensor(j, i, len(tensors))
        if names.setdefault(t.name, i) != i:
            j.get("name").fail(f"tensor name '{t.name}' is used twice (also tensors[{names[t.name]}])")
        g.tensors.append(t)
    op_names: Dict[str, int] = {}
    for i, j in enumerate(ops):
        op = _read_op(j, i, len(tensors), version >= 2)
        if op_names.setdefault(op.name, i) != i:
            j.get("name").fail(f"op name '{op.name}' is used twice (also ops[{op_names[op.name]}])")
        for tid, out in zip(op.outputs, j.get("outputs").elements()):
            if g.tensors[tid].producer is not None:
                out.fail(f"tensor {tid} ('{g.tensors[tid].name}') is produced twice")
            g.tensors[tid].producer = i
        g.ops.append(op)
    if r.find("outputs") is not None:
        g.outputs = [e.id(len(tensors)) for e in r.get("outputs").elements()]
    return g


def _no_constant(name: str):
    # NaN and Infinity are not JSON (src/util/json.cc rejects them too).
    raise ValueError(f"{name} is not a JSON value")


def load(graph: Union[str, os.PathLike, Dict[str, Any], Graph]) -> Graph:
    """A Graph from a path, a parsed JSON dict, or a Graph (returned as is)."""
    if isinstance(graph, Graph):
        return graph
    if isinstance(graph, dict):
        return from_dict(graph)
    if not isinstance(graph, (str, bytes, os.PathLike)):
        raise Error(f"expected a graph file's path, its parsed JSON or a memfit.Graph, got {type(graph).__name__}")
    path = os.fsdecode(graph)
    try:
        with open(path, encoding="utf-8") as f:
            root = json.load(f, parse_constant=_no_constant)
    except OSError as e:
        raise Error(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise Error(f"{path}: invalid JSON: {e}") from None
    except RecursionError:
        raise Error(f"{path}: invalid JSON: nested too deeply") from None
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
        if t.values:
            j["values"] = list(t.values)
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
