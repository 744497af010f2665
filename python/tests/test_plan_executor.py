"""Plans (PLAN.json from `memfit plan`) run by the executor equal the eager run
of the plain graph bit for bit: with and without the arena, and with
recompute / swap steps added to the plan (a forward activation freed after its
last forward use and recomputed, or swapped out and back in, before its first
backward use; `memfit plan` then places every storage instance anew)."""

import copy
import json
import subprocess

import pytest
import torch

import memfit
from memfit.plan import execute, load_plan, program_order_plan

MODELS = [
    ("mlp", ["--batch", "4", "--train"]),
    ("mlp", ["--batch", "4", "--train", "--no-update"]),
    ("bert-tiny", ["--batch", "2", "--seq", "16", "--train", "--no-update"]),
    ("resnet-18", ["--image", "32", "--batch", "2", "--train", "--no-update"]),
]
IDS = ["mlp-sgd", "mlp", "bert-tiny", "resnet-18"]


@pytest.fixture(scope="module")
def plans(zoo, memfit_cli, tmp_path_factory):
    cache = {}
    out = tmp_path_factory.mktemp("plans")

    def get(name, args):
        key = (name, tuple(args))
        if key not in cache:
            g = zoo(name, *args)
            path = out / f"{len(cache)}_{name}.plan.json"
            subprocess.run([memfit_cli, "plan", str(g), "-o", str(path)], check=True, capture_output=True)
            cache[key] = (g, path)
        return cache[key]

    return get


def assert_bit_exact(ref, got):
    assert set(ref) <= set(got)
    for name, value in ref.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert torch.equal(got[name], value), f"{name}: max |diff| {(got[name] - value).abs().max().item()}"


def place(plan, cli, tmp_path, name="steps"):
    """`memfit plan` on the steps of `plan` (a dict): a PLAN.json dict with one
    buffer per storage instance, checked by the C++ checker."""
    steps_only = {k: v for k, v in plan.items() if k in ("format", "version", "graph", "steps")}
    src, dst = tmp_path / f"{name}.json", tmp_path / f"{name}.plan.json"
    src.write_text(json.dumps(steps_only))
    subprocess.run([cli, "plan", str(src), "-o", str(dst)], check=True, capture_output=True)
    return json.loads(dst.read_text())


def add_recompute_and_swap(plan, count=3):
    """Frees up to `count` forward activations after their last forward use and
    recomputes them before their first backward use, and swaps `count` others
    out and back in over the same gap. Returns (plan dict, recomputed op types)."""
    plan = copy.deepcopy(plan)
    g = memfit.load(plan["graph"])
    root = [g.storage_root(t.id) for t in g.tensors]
    steps = plan["steps"]
    pos = {s["op"]: i for i, s in enumerate(steps) if s["kind"] == "compute"}
    freed_at = {root[s["storage"]]: i for i, s in enumerate(steps) if s["kind"] == "free"}
    fwd_uses, bwd_uses = {}, {}
    for op in g.ops:
        for tid in op.inputs:
            (fwd_uses if op.phase == "forward" else bwd_uses).setdefault(root[tid], []).append(pos[op.id])
    outputs = {root[t] for t in g.outputs}
    # A view made in the forward and read in the backward would still name the freed storage.
    has_views = {root[t.id] for t in g.tensors if t.alias_of is not None and t.producer is not None
                 and g.ops[t.producer].phase == "forward"}
    inserts = []  # (step index to insert before, new step)
    recomputed, used = [], set()
    # Random ops first, so that bert-tiny recomputes a dropout (RNG replay).
    candidates = sorted((op for op in g.ops if op.phase == "forward"),
                        key=lambda op: (not op.flags.random, op.id))
    for op in candidates:
        outs = [t for t in op.outputs]
        if (not outs or op.type.endswith("_") or any(g.tensors[t].alias_of is not None for t in outs)
                or any(t in outputs or t in has_views for t in outs)):
            continue
        # Every output read in the backward: the arena keeps their bytes until then.
        back = [t for t in outs if t in bwd_uses]
        if len(back) != len(outs):
            continue
        first_bwd = min(min(bwd_uses[t]) for t in back)
        # Independent of the recomputes chosen so far (no chains).
        if any(t in used for t in outs) or any(root[i] in used for i in op.inputs):
            continue
        # Every input must still be on the device at the recompute.
        if any(freed_at.get(root[i], len(steps)) < first_bwd for i in op.inputs):
            continue
        if len(recomputed) < count:
            for t in back:
                inserts.append((max(fwd_uses.get(t, []) + [pos[op.id]]) + 1, {"kind": "free", "storage": t}))
            inserts.append((first_bwd, {"kind": "recompute", "op": op.id}))
            recomputed.append(op.qualified_type)
            used.update(outs)
            used.update(root[i] for i in op.inputs)  # read by the recompute: not swapped out
    swapped = 0
    for t in sorted(bwd_uses):
        if swapped >= count or t in used or t in outputs or g.tensors[t].producer is None:
            continue
        if g.ops[g.tensors[t].producer].phase != "forward":
            continue
        last_fwd = max(fwd_uses.get(t, []) + [pos[g.tensors[t].producer]])
        inserts.append((last_fwd + 1, {"kind": "swap_out", "storage": t}))
        inserts.append((min(bwd_uses[t]), {"kind": "swap_in", "storage": t}))
        swapped += 1
    new_steps = []
    for i, s in enumerate(steps + [None]):
        new_steps.extend(step for at, step in inserts if at == i)
        if s is not None:
            new_steps.append(s)
    plan["steps"] = [{k: v for k, v in s.items() if k in ("kind", "op", "storage")} for s in new_steps]
    plan.pop("buffers", None)  # counted in the old step indices
    assert swapped == count, swapped
    return plan, recomputed


@pytest.mark.parametrize("name,args", MODELS, ids=IDS)
def test_plan_matches_eager(plans, name, args):
    graph_path, plan_path = plans(name, args)
    ref = memfit.run(str(graph_path))
    for arena in (False, True):
        got = memfit.run(str(plan_path), arena=arena)
        assert_bit_exact(ref, got)


@pytest.mark.parametrize("name,args", MODELS, ids=IDS)
def test_recompute_and_swap_match_eager(plans, memfit_cli, tmp_path, name, args):
    graph_path, plan_path = plans(name, args)
    ref = memfit.run(str(graph_path))
    plan, recomputed = add_recompute_and_swap(json.loads(plan_path.read_text()))
    plan = place(plan, memfit_cli, tmp_path)
    # The mlp frees every recomputable activation's input in the forward, so it only swaps.
    assert recomputed or name == "mlp"
    if name == "bert-tiny":
        assert "aten.native_dropout" in recomputed
    for arena in (False, True):
        run = execute(plan, arena=arena)
        assert_bit_exact(ref, run.outputs)
        assert run.peak_host_bytes > 0


def test_a_source_swapped_out_before_any_op_reads_it(plans, memfit_cli, tmp_path):
    """A plan may swap an input out before its first reader (the labels, which only the
    loss reads); the executor makes a generated source at that swap_out, as its first
    reader would have made it."""
    graph_path, plan_path = plans("mlp", MODELS[0][1])
    plan = json.loads(plan_path.read_text())
    g = memfit.load(plan["graph"])
    labels = next(t.id for t in g.tensors if t.name == "labels")
    first_read = min(i for i, s in enumerate(plan["steps"])
                     if s["kind"] == "compute" and labels in g.ops[s["op"]].inputs)
    steps = [{k: v for k, v in s.items() if k in ("kind", "op", "storage")} for s in plan["steps"]]
    steps[first_read:first_read] = [{"kind": "swap_in", "storage": labels}]
    steps.insert(0, {"kind": "swap_out", "storage": labels})
    plan = place({**plan, "steps": steps}, memfit_cli, tmp_path)
    ref = memfit.run(str(graph_path))
    for arena in (False, True):
        run = execute(plan, arena=arena)
        assert_bit_exact(ref, run.outputs)
        assert run.peak_host_bytes > 0


def test_arena_reports_out_variants_and_copies(plans):
    _, plan_path = plans("resnet-18", MODELS[3][1])
    run = execute(str(plan_path), arena=True)
    assert "aten.convolution" in run.out_variant_op_types
    assert "aten.addmm" in run.out_variant_op_types
    # torch 1.13 has native_batch_norm.out but no CPU kernel for it: computed, then copied.
    assert "aten.native_batch_norm" in run.copied_op_types
    assert not run.out_variant_op_types & run.copied_op_types
    assert run.peak_bytes >= run.arena_bytes


def test_arena_updates_caller_parameters(plans):
    """An optimizer step in the arena still updates the tensors passed in."""
    graph_path, plan_path = plans("mlp", MODELS[0][1])
    params = memfit.make_sources(str(graph_path), roles=["parameter"])
    before = {k: v.clone() for k, v in params.items()}
    ref = memfit.run(str(graph_path), {k: v.clone() for k, v in before.items()})
    memfit.run(str(plan_path), params, arena=True)
    for k, v in params.items():
        assert not torch.equal(v, before[k]), k
        assert torch.equal(v, ref[k]), k


def test_arena_as_strided_counts_from_its_own_storage(memfit_cli, tmp_path):
    """as_strided's storage_offset counts from the start of the storage the capture
    saw; in the arena that storage starts at its buffer's offset (autograd's
    gradient of squeeze/permute chains reads new_empty's storage this way).
    Counted from the arena's start, it read another tensor's bytes."""
    t = lambda i, name, shape, role="activation", **kw: dict(id=i, name=name, shape=shape, dtype="f32", role=role, **kw)
    graph = {"format": "memfit.graph", "version": 2, "name": "strided", "outputs": [4, 5],
             "tensors": [t(0, "x", [4, 6], "input"), t(1, "y", [4, 6]),
                         t(2, "rows", [2, 6], alias_of=1, strides=[6, 1], storage_offset=6),
                         t(3, "lower", [2, 6], alias_of=1, strides=[6, 1], storage_offset=6),
                         t(4, "out", [2, 6], "output"), t(5, "x2", [4, 6], "output")],
             "ops": [{"id": 0, "name": "relu", "type": "aten.relu", "inputs": [0], "outputs": [1]},
                     {"id": 1, "name": "rows", "type": "aten.slice", "overload": "Tensor", "inputs": [1],
                      "outputs": [2],
                      "attrs": {"dim": 0, "start": 1, "end": 3, "step": 1}, "flags": {"view": True}},
                     {"id": 2, "name": "lower", "type": "aten.as_strided", "inputs": [2], "outputs": [3],
                      "attrs": {"size": [2, 6], "stride": [6, 1], "storage_offset": 12}, "flags": {"view": True}},
                     {"id": 3, "name": "out", "type": "aten.mul", "overload": "Scalar", "inputs": [3], "outputs": [4],
                      "attrs": {"other": 2}},
                     {"id": 4, "name": "x2", "type": "aten.mul", "overload": "Scalar", "inputs": [0], "outputs": [5],
                      "attrs": {"other": 3}}]}
    src, dst = tmp_path / "strided.json", tmp_path / "strided.plan.json"
    src.write_text(json.dumps(graph))
    subprocess.run([memfit_cli, "plan", str(src), "-o", str(dst)], check=True, capture_output=True)
    assert any(b["offset"] > 0 for b in json.loads(dst.read_text())["buffers"]), "y must not sit at the arena's start"
    x = torch.randn(4, 6)
    want = torch.relu(x)[2:4] * 2
    for arena in (False, True):
        got = execute(str(dst), {"x": x.clone()}, arena=arena).outputs["out"]
        assert torch.equal(got, want), f"arena={arena}: max |diff| {(got - want).abs().max().item()}"


def test_bad_plans_are_errors(plans):
    graph_path, plan_path = plans("mlp", MODELS[1][1])
    plan = json.loads(plan_path.read_text())
    g = memfit.load(plan["graph"])
    # Free an activation right after its producer: its consumer fails and names it.
    first = next(i for i, s in enumerate(plan["steps"]) if s["kind"] == "compute" and g.ops[s["op"]].type == "aten.addmm")
    out = g.ops[plan["steps"][first]["op"]].outputs[0]
    broken = copy.deepcopy(plan)
    broken["steps"].insert(first + 1, {"kind": "free", "storage": out})
    with pytest.raises(memfit.Error, match="freed or not computed"):
        execute(broken)
    # Two live storages at the same arena offset: the placement check fails.
    overlap = copy.deepcopy(plan)
    placed = [b for b in overlap["buffers"] if "storage" in b]
    a, b = placed[0], next(b for b in placed[1:] if b["start"] < placed[0]["end"] and placed[0]["start"] < b["end"])
    b["offset"] = a["offset"]
    with pytest.raises(memfit.Error, match="overlaps live"):
        execute(overlap, arena=True)
    with pytest.raises(memfit.Error, match="unknown step kind"):
        load_plan({**plan, "steps": [{"kind": "teleport", "op": 0}]})
    with pytest.raises(memfit.Error, match="needs a plan"):
        memfit.run(str(graph_path), arena=True)


def test_program_order_plan_matches_cli(plans):
    """program_order_plan (for graphs) frees what `memfit plan` frees, in the same places."""
    graph_path, plan_path = plans("bert-tiny", MODELS[2][1])
    untimed = [{k: v for k, v in s.items() if k not in ("start_us", "end_us")}
               for s in json.loads(plan_path.read_text())["steps"]]
    assert program_order_plan(str(graph_path)).steps == untimed
