"""The Python graph reader (memfit.graph.read) follows the C++ reader's rules
(src/io/graph_json.cc): every malformed field, wrong type, missing field or
out-of-range id is a memfit.Error of one line naming the source and the field's
path, never a raw TypeError, KeyError or IndexError, nor a hang on an alias cycle.
Where the native module is built, the C++ reader rejects each case too."""

import copy
import json

import pytest

import memfit
from memfit import native
from memfit.graph import DTYPE_NAMES, PHASES, ROLES, OpFlags
from memfit.plan_file import plan_from_dict

# y = x + w; v = y.view(4); z = v * w (version 2: the view's flag is written).
GOOD = {
    "format": "memfit.graph", "version": 2, "name": "small", "metadata": {"model": "small"},
    "tensors": [{"id": 0, "name": "x", "shape": [4], "dtype": "f32", "role": "input"},
                {"id": 1, "name": "w", "shape": [4], "dtype": "f32", "role": "parameter"},
                {"id": 2, "name": "y", "shape": [4], "dtype": "f32", "role": "activation"},
                {"id": 3, "name": "v", "shape": [4], "dtype": "f32", "role": "activation", "alias_of": 2},
                {"id": 4, "name": "z", "shape": [4], "dtype": "f32", "role": "output"}],
    "ops": [{"id": 0, "name": "y", "type": "aten.add", "overload": "Tensor", "phase": "forward", "inputs": [0, 1],
             "outputs": [2], "attrs": {"alpha": 1}},
            {"id": 1, "name": "v", "type": "aten.view", "phase": "forward", "inputs": [2], "outputs": [3],
             "attrs": {"size": [4]}, "flags": {"view": True}},
            {"id": 2, "name": "z", "type": "aten.mul", "overload": "Tensor", "phase": "forward", "inputs": [3, 1],
             "outputs": [4]}],
    "outputs": [4],
}


def broken(path, value):
    """GOOD with the field at `path` (keys and indices) set to `value` (DELETE removes it)."""
    g = copy.deepcopy(GOOD)
    *parents, last = path
    node = g
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return g


DELETE = object()

# (path, value, the message's expected field path and text)
CASES = [
    # alias_of: each malformed form the issue names, and the cycles reading in Python relies on excluding.
    (("tensors", 3, "alias_of"), "2", r"tensors\[3\]\.alias_of: expected an integer, got \"2\""),
    (("tensors", 3, "alias_of"), -1, r"tensors\[3\]\.alias_of: tensor id -1 is out of range \(the graph has 5\)"),
    (("tensors", 3, "alias_of"), 5, r"tensors\[3\]\.alias_of: tensor id 5 is out of range"),
    (("tensors", 3, "alias_of"), [2], r"tensors\[3\]\.alias_of: expected an integer, got \[2\]"),
    (("tensors", 3, "alias_of"), 2.0, r"tensors\[3\]\.alias_of: expected an integer, got 2\.0"),
    (("tensors", 3, "alias_of"), True, r"tensors\[3\]\.alias_of: expected an integer, got true"),
    (("tensors", 3, "alias_of"), None, r"tensors\[3\]\.alias_of: expected an integer, got null"),
    (("tensors", 3, "alias_of"), 1 << 64, r"tensors\[3\]\.alias_of: integer is too large"),
    (("tensors", 3, "alias_of"), 3, r"tensors\[3\]\.alias_of: tensor 'v' aliases itself"),
    (("tensors", 3, "alias_of"), 4, r"tensors\[3\]\.alias_of: tensor 'v' aliases tensor 4 \(a view's base must be"),
    # Tensors: every field.
    (("tensors", 2), "y", r"tensors\[2\]: expected an object, got \"y\""),
    (("tensors", 2, "name"), DELETE, r"tensors\[2\]: missing field 'name'"),
    (("tensors", 2, "name"), 7, r"tensors\[2\]\.name: expected a string, got 7"),
    (("tensors", 2, "name"), "", r"tensors\[2\]\.name: a tensor's name must not be empty"),
    (("tensors", 2, "name"), "x", r"tensors\[2\]\.name: tensor name 'x' is used twice \(also tensors\[0\]\)"),
    (("tensors", 2, "id"), 7, r"tensors\[2\]\.id: tensor ids must equal their position \(2\)"),
    (("tensors", 2, "shape"), DELETE, r"tensors\[2\]: missing field 'shape'"),
    (("tensors", 2, "shape"), 4, r"tensors\[2\]\.shape: expected an array, got 4"),
    (("tensors", 2, "shape"), [4, "2"], r"tensors\[2\]\.shape\[1\]: expected an integer, got \"2\""),
    (("tensors", 2, "shape"), [-4], r"tensors\[2\]\.shape: negative dimension in shape \[-4\]"),
    (("tensors", 2, "dtype"), "f33", r"tensors\[2\]\.dtype: unknown dtype 'f33'"),
    (("tensors", 2, "dtype"), 32, r"tensors\[2\]\.dtype: expected a string, got 32"),
    (("tensors", 2, "role"), "weight", r"tensors\[2\]\.role: unknown role 'weight'"),
    (("tensors", 2, "role"), DELETE, r"tensors\[2\]: missing field 'role'"),
    (("tensors", 2, "strides"), [1, 1], r"tensors\[2\]\.strides: 2 strides for rank 1"),
    (("tensors", 2, "strides"), "1", r"tensors\[2\]\.strides: expected an array"),
    (("tensors", 2, "storage_offset"), -3, r"tensors\[2\]\.storage_offset: must not be negative"),
    (("tensors", 2, "storage_offset"), "0", r"tensors\[2\]\.storage_offset: expected an integer"),
    (("tensors", 2, "size"), 16, r"tensors\[2\]: unknown field 'size'"),
    (("tensors", 2, "values"), [1, 2], r"tensors\[2\]\.values: 2 values for 4 elements"),
    (("tensors", 2, "values"), [1, 2, 3, 4], r"tensors\[2\]\.values: only an integer or bool tensor may have values"),
    # Ops: every field.
    (("ops", 0), [], r"ops\[0\]: expected an object, got \[\]"),
    (("ops", 0, "name"), DELETE, r"ops\[0\]: missing field 'name'"),
    (("ops", 0, "name"), "z", r"ops\[2\]\.name: op name 'z' is used twice \(also ops\[0\]\)"),
    (("ops", 0, "type"), ["aten.add"], r"ops\[0\]\.type: expected a string"),
    (("ops", 0, "type"), "", r"ops\[0\]\.type: must not be empty"),
    (("ops", 0, "id"), "0", r"ops\[0\]\.id: expected an integer"),
    (("ops", 0, "overload"), 1, r"ops\[0\]\.overload: expected a string"),
    (("ops", 0, "phase"), "sideways", r"ops\[0\]\.phase: unknown phase 'sideways'"),
    (("ops", 0, "inputs"), DELETE, r"ops\[0\]: missing field 'inputs'"),
    (("ops", 0, "inputs"), 0, r"ops\[0\]\.inputs: expected an array, got 0"),
    (("ops", 0, "inputs", 1), 9, r"ops\[0\]\.inputs\[1\]: tensor id 9 is out of range \(the graph has 5\)"),
    (("ops", 0, "inputs", 1), -1, r"ops\[0\]\.inputs\[1\]: tensor id -1 is out of range"),
    (("ops", 0, "inputs", 1), "w", r"ops\[0\]\.inputs\[1\]: expected an integer, got \"w\""),
    (("ops", 0, "outputs", 0), 4, r"ops\[2\]\.outputs\[0\]: tensor 4 \('z'\) is produced twice"),
    (("ops", 0, "outputs", 0), None, r"ops\[0\]\.outputs\[0\]: expected an integer, got null"),
    (("ops", 0, "attrs"), [1], r"ops\[0\]\.attrs: expected an object, got \[1\]"),
    (("ops", 0, "attrs", "alpha"), {"float": "huge"}, r"ops\[0\]\.attrs\.alpha: expected a number, got"),
    (("ops", 0, "attrs", "alpha"), {"floats": 3}, r"ops\[0\]\.attrs\.alpha\.floats: expected an array, got 3"),
    (("ops", 0, "attrs", "alpha"), {"floats": ["x"]}, r"ops\[0\]\.attrs\.alpha\.floats\[0\]: expected a number"),
    (("ops", 0, "attrs", "alpha"), [1, "two"], r"ops\[0\]\.attrs\.alpha\[1\]: list attributes hold numbers only"),
    (("ops", 0, "attrs", "alpha"), [[1]], r"ops\[0\]\.attrs\.alpha\[0\]: list attributes hold numbers only"),
    (("ops", 0, "cost"), 1, r"ops\[0\]: unknown field 'cost'"),
    (("ops", 1, "flags"), {"sticky": True}, r"ops\[1\]\.flags: unknown field 'sticky'"),
    (("ops", 1, "flags"), [], r"ops\[1\]\.flags: expected an object"),
    (("ops", 1, "flags", "view"), 1, r"ops\[1\]\.flags\.view: expected true or false, got 1"),
    (("ops", 1, "flags", "mutates"), [1], r"ops\[1\]\.flags\.mutates\[0\]: input position 1 is out of range "
                                          r"\(the op has 1 inputs\)"),
    (("ops", 1, "flags", "mutates"), 0, r"ops\[1\]\.flags\.mutates: expected an array"),
    # The top level.
    (("tensors",), DELETE, r"top level: missing field 'tensors'"),
    (("tensors",), {}, r"tensors: expected an array, got \{\}"),
    (("ops",), DELETE, r"top level: missing field 'ops'"),
    (("outputs", 0), 5, r"outputs\[0\]: tensor id 5 is out of range"),
    (("outputs",), 4, r"outputs: expected an array, got 4"),
    (("name",), 1, r"name: expected a string, got 1"),
    (("metadata",), [], r"metadata: expected an object"),
    (("metadata", "batch"), 2, r"metadata\.batch: expected a string, got 2"),
    (("version",), "2", r"version: expected an integer"),
    (("version",), 3, r"version: unsupported version 3"),
    (("version",), DELETE, r"top level: missing field 'version'"),
    (("extra",), 1, r"top level: unknown field 'extra'"),
    (("format",), "memfit.plan", r"format: this is a plan"),
    (("format",), "onnx", r"top level: not a memfit graph"),
]


@pytest.mark.parametrize("path,value,message", CASES, ids=[".".join(map(str, c[0])) + "=" + repr(c[1])[:20]
                                                            for c in CASES])
def test_malformed_fields_are_one_line_errors_naming_the_field(path, value, message):
    bad = broken(path, value)
    with pytest.raises(memfit.Error, match=r"^G\.json: " + message) as e:
        memfit.from_dict(bad, "G.json")
    assert "\n" not in str(e.value)
    if native.native_available():
        # The C++ reader (with its validation) rejects it too.
        with pytest.raises(memfit.Error):
            native._native().validate(json.dumps(bad))


def test_the_good_graph_reads_and_round_trips():
    g = memfit.from_dict(GOOD, "G.json")
    assert g.storage_root(3) == 2 and g.tensors[2].producer == 0 and g.ops[1].flags == OpFlags(view=True)
    assert memfit.to_dict(g) == memfit.to_dict(memfit.from_dict(memfit.to_dict(g)))
    if native.native_available():
        native._native().validate(json.dumps(GOOD))


def test_known_values_are_the_runs_sources():
    # An integer source with known values (an ONNX import's index grid) is
    # made of them, written back, and accepted by the native validator.
    g = copy.deepcopy(GOOD)
    g["tensors"][1].update({"dtype": "i64", "role": "buffer", "values": [3, 1, 4, 1]})
    g["ops"][0]["attrs"] = {}
    loaded = memfit.from_dict(g, "G.json")
    assert loaded.tensors[1].values == [3, 1, 4, 1]
    assert memfit.to_dict(loaded)["tensors"][1]["values"] == [3, 1, 4, 1]
    from memfit.sources import make_source
    assert make_source(loaded, 1).tolist() == [3, 1, 4, 1]
    if native.native_available():
        native._native().validate(json.dumps(g))


def test_non_finite_attributes_travel_tagged():
    g = memfit.from_dict(broken(("ops", 0, "attrs", "alpha"), {"floats": [1, {"float": "-inf"}]}))
    assert g.ops[0].attrs["alpha"] == [1.0, float("-inf")]
    g = memfit.from_dict(broken(("ops", 0, "attrs", "alpha"), {"float": "inf"}))
    assert g.ops[0].attrs["alpha"] == float("inf")


def test_the_vocabulary_matches_the_native_module():
    """The dtype, role and phase names the reader accepts are the C++ side's."""
    if not native.native_available():
        pytest.skip("native module not built")
    for dtype in DTYPE_NAMES:
        lone = {**GOOD, "tensors": [{"name": "x", "shape": [4], "dtype": dtype, "role": "input"}], "ops": [],
                "outputs": []}
        native._native().validate(json.dumps(lone))
    for role in ROLES:
        # A source role on the input x, the others on the produced y.
        at = 0 if role in memfit.graph.SOURCE_ROLES else 2
        native._native().validate(json.dumps(broken(("tensors", at, "role"), role)))
    for phase in PHASES:
        native._native().validate(json.dumps(broken(("ops", 0, "phase"), phase)))


def test_files_that_are_not_json_name_the_file(tmp_path):
    cases = {"empty.json": b"", "nan.json": b'{"format": NaN}', "binary.json": b"\xff\xfe\x00",
             "deep.json": b"[" * 100000}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(memfit.Error, match=f"{name}: invalid JSON") as e:
            memfit.load(tmp_path / name)
        assert "\n" not in str(e.value)
    with pytest.raises(memfit.Error, match="cannot read"):
        memfit.load(tmp_path / "missing.json")
    with pytest.raises(memfit.Error, match="expected a graph file's path, its parsed JSON or a memfit.Graph, got int"):
        memfit.load(3)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(memfit.Error, match=r"list\.json: top level: not a memfit graph"):
        memfit.load(tmp_path / "list.json")


def test_a_plan_names_the_graph_inside_it_and_its_steps_and_buffers():
    plan = {"format": "memfit.plan", "version": 2, "graph": broken(("tensors", 3, "alias_of"), "2"),
            "steps": [{"kind": "compute", "op": 0}]}
    with pytest.raises(memfit.Error, match=r"^P\.json: graph\.tensors\[3\]\.alias_of: expected an integer"):
        load_plan_dict(plan)
    plan["graph"] = GOOD
    for steps, message in (([{"kind": "compute", "op": "0"}], r"steps\[0\]\.op: expected an integer"),
                           ([{"kind": "compute", "op": 3}], r"steps\[0\]\.op: op id 3 is out of range"),
                           ([{"kind": "free"}], r"steps\[0\]: missing field 'storage'"),
                           ([{"kind": "free", "storage": -1}], r"steps\[0\]\.storage: tensor id -1 is out of range"),
                           (["compute"], r"steps\[0\]: unknown step kind None"),
                           ({"kind": "free"}, r"steps: expected an array")):
        with pytest.raises(memfit.Error, match=r"^P\.json: " + message):
            load_plan_dict({**plan, "steps": steps})
    buffer = {"storage": 2, "offset": 0, "size": 16, "start": 0, "end": 2}
    for change, message in (({"offset": "0"}, r"buffers\[0\]\.offset: expected an integer"),
                            ({"storage": 9}, r"buffers\[0\]\.storage: tensor id 9 is out of range"),
                            ({"end": None}, r"buffers\[0\]\.end: expected an integer, got null")):
        with pytest.raises(memfit.Error, match=r"^P\.json: " + message):
            load_plan_dict({**plan, "buffers": [{**buffer, **change}]})
    missing = dict(buffer)
    del missing["size"]
    with pytest.raises(memfit.Error, match=r"^P\.json: buffers\[0\]: missing field 'size'"):
        load_plan_dict({**plan, "buffers": [missing]})
    with pytest.raises(memfit.Error, match=r"^P\.json: arena_bytes: expected an integer"):
        load_plan_dict({**plan, "arena_bytes": "1k"})


def load_plan_dict(plan):
    return plan_from_dict(plan, "P.json")
