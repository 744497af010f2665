"""Op flags: written into the graph JSON by the C++ registry (version 2), read by
Python, which keeps no op lists of its own; graphs without them (version 1, a
Python capture) get them from the native module, or fail clearly where a rerun
needs them."""

import copy
import json

import pytest
import torch

import memfit
from memfit import native
from memfit.graph import OpFlags
from memfit.plan import execute, load_plan, program_order_plan


def needs_native():
    if not native.native_available():
        pytest.skip("native module not built")


def test_every_random_aten_op_is_random_in_the_registry():
    """torch tags the ops that draw from its generator; the registry knows them all."""
    needs_native()
    tag = getattr(torch, "Tag", None)
    if tag is None or not hasattr(tag, "nondeterministic_seeded"):
        pytest.skip("this torch has no nondeterministic_seeded tag")
    seeded = set()
    for schema in torch._C._jit_get_all_schemas():
        if not schema.name.startswith("aten::"):
            continue
        name = schema.name[len("aten::"):]
        try:
            overload = getattr(getattr(torch.ops.aten, name), schema.overload_name or "default")
        except (AttributeError, RuntimeError):
            continue
        if tag.nondeterministic_seeded in overload.tags and not schema.overload_name.endswith("out"):
            seeded.add("aten." + name)
    assert "aten.randn" in seeded and "aten.native_dropout" in seeded
    missing = sorted(t for t in seeded if not native._native().is_random_op(t))
    assert missing == []


def test_version_2_flags_are_read_and_written(zoo):
    path = zoo("bert-tiny", "--batch", "2", "--seq", "8", "--train")
    raw = json.loads(path.read_text())
    assert raw["version"] == 2
    g = memfit.load(path)
    assert g.has_flags()
    by_type = {}
    for op in g.ops:
        by_type.setdefault(op.type, op.flags)
    assert by_type["aten.native_dropout"] == OpFlags(random=True)
    assert by_type["aten.view"] == OpFlags(view=True)
    assert by_type["aten.add_"].inplace
    assert by_type["aten.addmm"] == OpFlags()
    # Written back as read.
    assert memfit.to_dict(g)["ops"] == raw["ops"]
    assert memfit.to_dict(g)["version"] == 2


def test_version_1_loads_without_flags_and_stays_version_1(zoo):
    raw = json.loads(zoo("mlp", "--batch", "2").read_text())
    old = copy.deepcopy(raw)
    old["version"] = 1
    for op in old["ops"]:
        op.pop("flags", None)
    g = memfit.from_dict(old)
    assert not g.has_flags() and all(op.flags is None for op in g.ops)
    assert memfit.to_dict(g)["version"] == 1
    # The native module fills them from the registry: the C++ side's own.
    needs_native()
    native.ensure_op_flags(g)
    assert memfit.to_dict(g) == raw


def test_bad_flags_name_the_field(zoo):
    raw = json.loads(zoo("mlp", "--batch", "2").read_text())
    bad = copy.deepcopy(raw)
    bad["ops"][0]["flags"] = {"sticky": True}
    with pytest.raises(memfit.Error, match=r"ops\[0\]\.flags: unknown field 'sticky'"):
        memfit.from_dict(bad)
    bad["ops"][0]["flags"] = {"mutates": [7]}
    with pytest.raises(memfit.Error, match=r"ops\[0\]\.flags\.mutates\[0\]: input position 7 is out of range"):
        memfit.from_dict(bad)
    bad["version"] = 3
    with pytest.raises(memfit.Error, match="unsupported version 3"):
        memfit.from_dict(bad)


# r = randn(4) (a random factory); y = x + r; z = y * r, with r freed after y and
# recomputed for z: version 1 (no flags), as a Python capture writes it.
RANDN = {
    "format": "memfit.graph", "version": 1, "name": "randn",
    "tensors": [{"id": 0, "name": "x", "shape": [4], "dtype": "f32", "role": "input"},
                {"id": 1, "name": "r", "shape": [4], "dtype": "f32", "role": "activation"},
                {"id": 2, "name": "y", "shape": [4], "dtype": "f32", "role": "activation"},
                {"id": 3, "name": "z", "shape": [4], "dtype": "f32", "role": "output"}],
    "ops": [{"id": 0, "name": "r", "type": "aten.randn", "phase": "forward", "inputs": [], "outputs": [1],
             "attrs": {"size": [4]}},
            {"id": 1, "name": "y", "type": "aten.add", "overload": "Tensor", "phase": "forward", "inputs": [0, 1],
             "outputs": [2]},
            {"id": 2, "name": "z", "type": "aten.mul", "overload": "Tensor", "phase": "forward", "inputs": [2, 1],
             "outputs": [3]}],
    "outputs": [3],
}


def recompute_plan(g):
    steps = [{"kind": "compute", "op": 0}, {"kind": "compute", "op": 1}, {"kind": "free", "storage": 1},
             {"kind": "recompute", "op": 0}, {"kind": "compute", "op": 2}]
    return {"format": "memfit.plan", "version": 2, "graph": memfit.to_dict(g), "steps": steps}


def test_a_graph_without_flags_gets_them_from_the_native_module():
    """aten.randn was unknown to the registry (so treated as deterministic): now its
    recompute replays the RNG, the recomputed r equals the first."""
    needs_native()
    g = memfit.from_dict(RANDN)
    assert not g.has_flags()
    plan = recompute_plan(g)
    assert plan["graph"]["version"] == 1
    ref = execute(program_order_plan(g), seed=3).outputs["z"]
    got = execute(plan, seed=3).outputs["z"]
    assert torch.equal(ref, got)
    native.ensure_op_flags(g)
    assert [op.flags for op in g.ops] == [OpFlags(random=True), OpFlags(), OpFlags()]


def test_without_the_native_module_only_reruns_need_flags(monkeypatch):
    g = memfit.from_dict(RANDN)
    plan = recompute_plan(g)

    def unavailable():
        raise memfit.Error("memfit's native module (_memfit) is not available")

    monkeypatch.setattr(native, "_native", unavailable)
    # Program order reruns nothing: runs, and compiles, without flags.
    assert execute(program_order_plan(g), seed=0).outputs
    memfit.compile_plan(program_order_plan(g))
    # A recompute needs them.
    with pytest.raises(memfit.Error, match="has no op flags.*recompute steps, DTR"):
        execute(load_plan(plan), seed=0)
    with pytest.raises(memfit.Error, match="has no op flags.*live DTR needs them"):
        memfit.dtr_run(g, budget_ratio=1.0)
