"""memfit.codegen: a plan compiled to Python source gives exactly what the
interpreter (memfit.plan.execute) gives -- outputs, updated parameters,
momentum buffers and BatchNorm running statistics torch.equal -- for plans
with recomputation (dropout replaying its RNG state, batch norm's writes
undone) and swapping; random ops reordered by a plan still draw in program
order. Also memfit.optimize / simulate / plan_offsets in-process."""

import copy
import json
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.codegen import compile_plan
from memfit.executor import make_sources
from memfit.plan import execute, load_plan, program_order_plan

needs_native = pytest.mark.skipif(not memfit.native_available(), reason="native module _memfit not built")

CASES = {
    "bert-tiny-dropout": (("bert-tiny", "--batch", "16", "--seq", "128", "--train"), {"lat_limit_ratio": 1.5}),
    "resnet-18-bn-momentum": (("resnet-18", "--batch", "8", "--image", "64", "--train", "--momentum", "0.9"),
                              {"lat_limit_ratio": 1.5}),
}


def kinds(plan):
    out = {}
    for s in plan.steps:
        out[s["kind"]] = out.get(s["kind"], 0) + 1
    return out


def check_same_as_interpreter(plan, seed=0):
    compiled = compile_plan(plan)
    sources = make_sources(plan.graph, seed=seed)
    a = {k: v.clone() for k, v in sources.items()}
    b = {k: v.clone() for k, v in sources.items()}
    ref = execute(plan, a, seed=seed, track_memory=False).outputs
    got = compiled.run(b, seed=seed)
    assert ref.keys() <= got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    for k in a:  # written in place: parameters, momentum buffers, running statistics
        assert torch.equal(a[k], b[k]), k
    return compiled


@needs_native
@pytest.mark.parametrize("case", sorted(CASES))
def test_optimized_plan_compiles_to_the_interpreters_results(case, zoo):
    args, limit = CASES[case]
    graph_path = zoo(*args)
    res = memfit.optimize(str(graph_path), device="a100", work_budget=100, **limit)
    k = kinds(res.plan)
    assert k.get("recompute", 0) + k.get("swap_out", 0) > 0, k
    compiled = check_same_as_interpreter(res.plan)
    src = compiled.source
    if k.get("swap_out"):
        assert "_rt.swap_out(" in src and "_rt.swap_in(" in src
    if k.get("recompute"):
        assert "recompute" in src


def test_program_order_plan_compiles(zoo):
    plan = program_order_plan(memfit.load(str(zoo("mlp", "--batch", "8", "--train"))))
    check_same_as_interpreter(plan)


class TwoDropouts(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)

    def forward(self, x):
        return F.dropout(self.a(x), 0.5) + F.dropout(self.b(x), 0.3)


def test_random_ops_reordered_by_a_plan_draw_in_program_order():
    cap = memfit.capture(TwoDropouts(), (torch.randn(32, 16),), fake=True)
    plan = program_order_plan(cap.graph)
    g = plan.graph
    if not memfit.native_available():
        pytest.skip("a Python capture's op flags come from the native module")
    memfit.native.ensure_op_flags(g)  # a Python capture: the registry's flags through the native module
    random = [op.id for op in g.ops if op.flags.random]
    assert len(random) == 2
    # Move the second random op, with the ops it depends on, ahead of the first random op's chain.
    first, second = random

    def ancestors(oid):
        seen, todo = set(), [oid]
        while todo:
            o = todo.pop()
            if o in seen:
                continue
            seen.add(o)
            todo += [g.tensors[t].producer for t in g.ops[o].inputs if g.tensors[t].producer is not None]
        return seen

    mine, theirs = ancestors(second), ancestors(first)
    moved = [s for s in plan.steps if s["kind"] == "compute" and s["op"] in mine - theirs]
    rest = [s for s in plan.steps if s not in moved]
    at = min(i for i, s in enumerate(rest) if s["kind"] == "compute" and s["op"] in theirs - mine)
    reordered = load_plan({"format": "memfit.plan", "version": 2, "graph": memfit.to_dict(g),
                           "steps": rest[:at] + moved + rest[at:]})
    straight = compile_plan(plan)
    swapped = compile_plan(reordered)
    assert swapped.reorders_random and not straight.reorders_random
    want = straight.run(seed=5)
    rng_after = torch.get_rng_state()
    got = swapped.run(seed=5)
    assert torch.equal(torch.get_rng_state(), rng_after)
    for k in want:
        assert torch.equal(want[k], got[k]), k
    # Not vacuous: the interpreter draws in the plan's order, so its masks differ.
    interp = execute(reordered, seed=5, track_memory=False).outputs
    assert any(not torch.equal(want[k], interp[k]) for k in want)


@needs_native
def test_cuda_code_waits_for_a_swap_in_just_before_its_first_reader(zoo):
    """Compiled for CUDA (not run: no GPU here): every swap-in is followed, before the
    first op that reads the storage, by the main stream's wait for its copy."""
    graph_path = zoo(*CASES["resnet-18-bn-momentum"][0])
    # Swapping only: whatever the plan saves, it saves by swaps.
    res = memfit.optimize(str(graph_path), device="a100", work_budget=100, lat_limit_ratio=1.5, fission=False,
                          recompute=False)
    assert any(s["kind"] == "swap_in" for s in res.plan.steps)
    src = compile_plan(res.plan, device="cuda").source
    lines = src.splitlines()
    swapped_in = 0
    for i, line in enumerate(lines):
        if "= _rt.swap_in(" not in line:
            continue
        swapped_in += 1
        root = line.split("_rt.swap_in(")[1].split(",")[0]
        names = [n.strip() for n in line.split("=")[0].split(",") if n.strip()]
        readers = [j for j in range(i + 1, len(lines)) if "_rt." not in lines[j] and any(
            re.search(rf"\b{n}\b", lines[j].split("=", 1)[-1]) for n in names)]
        waits = [j for j in range(i + 1, len(lines)) if lines[j].strip() == f"_rt.wait({root})"]
        assert waits and (not readers or waits[0] < readers[0]), (line, waits[:1], readers[:1])
    assert swapped_in > 0


def test_fissioned_graph_compiles_to_the_interpreters_results(memfit_cli, tmp_path):
    """A graph split along the batch by `memfit fission` (what memfit.optimize may choose)
    runs through the generated code as through the interpreter."""
    import subprocess

    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 5))
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 5, (6,))
    cap = memfit.capture(model, (x, y), loss_fn=lambda out, x, y: F.cross_entropy(out, y), num_module_inputs=1,
                         optimizer="sgd-momentum", fake=True)
    whole, split = tmp_path / "g.json", tmp_path / "split.json"
    memfit.save(cap.graph, str(whole))
    r = subprocess.run([memfit_cli, "fission", str(whole), "--dim", "batch", "--parts", "3", "-o", str(split)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"memfit fission did not split: {r.stderr.strip()}")
    g = memfit.load(str(split))
    assert len(g.ops) > len(cap.graph.ops)
    check_same_as_interpreter(program_order_plan(g))


def test_detach_is_the_input_itself_except_for_a_graph_output():
    """Autograd's saved tensors come back as aten.detach (a captured ReLU network has
    one per ReLU); the step runs without autograd, so the generated code binds the
    input itself instead of dispatching. A detach that is a graph output still gets
    its own tensor object."""
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    cap = memfit.capture(model, (torch.randn(8, 16), torch.randint(0, 4, (8,))),
                         loss_fn=lambda out, x, y: F.cross_entropy(out, y), num_module_inputs=1,
                         optimizer="sgd-momentum", fake=True)
    detaches = [op for op in cap.graph.ops if op.type == "aten.detach"]
    assert detaches
    compiled = check_same_as_interpreter(program_order_plan(cap.graph))
    for op in detaches:
        assert re.search(rf"^    v{op.outputs[0]} = v{op.inputs[0]}$", compiled.source, re.M), op.name

    g = copy.deepcopy(cap.graph)
    g.outputs = list(g.outputs) + [detaches[0].outputs[0]]
    compiled = check_same_as_interpreter(program_order_plan(g))
    out, x = detaches[0].outputs[0], detaches[0].inputs[0]
    assert re.search(rf"^    v{out} = F\d+\(v{x}\)$", compiled.source, re.M)


def test_compile_errors_name_the_step():
    cap = memfit.capture(TwoDropouts(), (torch.randn(4, 16),), fake=True)
    plan = program_order_plan(cap.graph)
    # Free the first op's result right after it: its reader finds it gone.
    first = next(s for s in plan.steps if s["kind"] == "compute")
    out = plan.graph.ops[first["op"]].outputs[0]
    steps = [first, {"kind": "free", "storage": out}] + plan.steps[1:]
    bad = load_plan({"format": "memfit.plan", "version": 2, "graph": memfit.to_dict(plan.graph), "steps": steps})
    with pytest.raises(memfit.Error, match=r"steps\[\d+\]: op .* is freed or not computed"):
        compile_plan(bad)


@needs_native
def test_native_api_optimize_simulate_plan_offsets(zoo):
    graph_path = str(zoo("mlp", "--batch", "256", "--train"))
    res = memfit.optimize(graph_path, mem_limit_ratio=0.9, device="a100", deterministic=True)
    assert res.optimized["peak_bytes"] <= 0.9 * res.original["peak_bytes"]
    assert res.plan_json["format"] == "memfit.plan" and res.figures["method"]
    sim = memfit.simulate(res.plan, device="a100")
    assert sim["peak_bytes"] == res.optimized["peak_bytes"]
    assert memfit.simulate(graph_path, device="a100")["peak_bytes"] == res.original["peak_bytes"]
    placed = memfit.plan_offsets(memfit.load(graph_path), device="a100", time_limit=1.0)
    assert placed.arena_bytes > 0 and placed.buffers
    by_bytes = memfit.optimize(memfit.load(graph_path), mem_limit="1GiB", device="a100", deterministic=True)
    assert by_bytes.figures["limit_bytes"] == 2 ** 30
    from memfit.native import parse_bytes  # the CLI's units (src/util/byte_count.h)

    assert parse_bytes("2TiB") == 2 * 2 ** 40 and parse_bytes("1 tb") == 10 ** 12 and parse_bytes("8 GiB") == 8 * 2 ** 30


@needs_native
def test_native_errors_are_memfit_error(zoo):
    import memfit.native as native

    assert native._native().Error is memfit.Error
    graph_path = str(zoo("mlp", "--batch", "8", "--train"))
    with pytest.raises(memfit.Error, match="cannot be met"):
        memfit.optimize(graph_path, mem_limit_ratio=0.01, device="a100", work_budget=10)
    with pytest.raises(memfit.Error, match="exactly one of"):
        memfit.optimize(graph_path, device="a100")
    with pytest.raises(memfit.Error, match="tpu"):
        memfit.simulate(graph_path, device="tpu")
    with pytest.raises(memfit.Error, match="unknown unit"):
        memfit.optimize(graph_path, mem_limit="8 parsecs")
    graph = json.loads(open(graph_path).read())
    graph["ops"][0]["inputs"] = [10 ** 6]
    with pytest.raises(memfit.Error):
        memfit.optimize(graph, mem_limit_ratio=0.9)


@needs_native
def test_timer_times_every_step_and_changes_no_result(zoo):
    """compile_plan(timer=...): one sample per run in step_times for every plan step that
    emits code (computes, recomputes, frees of a live variable, swaps), none for the rest;
    the results are the untimed code's."""
    res = memfit.optimize(str(zoo(*CASES["resnet-18-bn-momentum"][0])), device="a100", work_budget=100,
                          lat_limit_ratio=1.5)
    ticks = iter(range(10 ** 9))
    timed = compile_plan(res.plan, timer=lambda: float(next(ticks)))
    plain = compile_plan(res.plan)
    assert plain.step_times is None and len(timed.step_times) == len(res.plan.steps)
    assert "_clk()" in timed.source and "_clk" not in plain.source
    sources = make_sources(res.plan.graph, seed=0)
    a = timed.run({k: v.clone() for k, v in sources.items()}, seed=0)
    timed.run({k: v.clone() for k, v in sources.items()}, seed=0)
    b = plain.run({k: v.clone() for k, v in sources.items()}, seed=0)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for step, times in zip(res.plan.steps, timed.step_times):
        if step["kind"] in ("compute", "recompute"):
            assert times == [1.0, 1.0], step  # the fake clock: one tick per timed block
        else:
            assert len(times) in (0, 2), step
