"""Step plans whose storages are on the device several times (recomputed, or
swapped out and back in): `memfit plan` gives each stay (instance) its own
buffer; the executor uses the buffer covering the step that (re)creates the
storage, with and without the arena equals the eager run bit for bit, and a
plan whose instances overlap is rejected by the executor and by the C++
checker."""

import copy
import json
import subprocess

import pytest

import memfit
from memfit.plan import execute, load_plan
from test_plan_executor import add_recompute_and_swap, assert_bit_exact, place

CASES = {
    "bert-tiny": ("bert-tiny", "--batch", "2", "--seq", "16", "--train", "--no-update"),
    "mlp-sgd": ("mlp", "--batch", "4", "--train"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, zoo, memfit_cli, tmp_path_factory):
    """(graph path, placed step plan dict with recompute and swap steps, the
    storages brought back to the device)."""
    name, *args = CASES[request.param]
    graph_path = zoo(name, *args)
    out = tmp_path_factory.mktemp(request.param)
    base = out / "base.plan.json"
    subprocess.run([memfit_cli, "plan", str(graph_path), "-o", str(base)], check=True, capture_output=True)
    steps, _ = add_recompute_and_swap(json.loads(base.read_text()))
    back = {s["storage"] for s in steps["steps"] if s["kind"] == "swap_in"}
    g = memfit.load(steps["graph"])
    back |= {t for s in steps["steps"] if s["kind"] == "recompute" for t in g.ops[s["op"]].outputs}
    return graph_path, place(steps, memfit_cli, out), back


def test_each_instance_has_its_own_buffer(case):
    graph_path, plan, back = case
    assert plan["version"] == 2
    p = load_plan(plan)
    for r in back:
        assert len(p.buffers[r]) == 2, p.graph.tensors[r].name
        first, second = p.buffers[r]
        assert first.end <= second.start


def test_instances_match_eager_with_and_without_arena(case):
    graph_path, plan, _ = case
    ref = memfit.run(str(graph_path))
    assert any(name.endswith(".grad") for name in ref) or any(".weight" in name for name in ref)
    for arena in (False, True):
        run = execute(plan, arena=arena)
        assert_bit_exact(ref, run.outputs)
        assert run.peak_host_bytes > 0


def second_instance_and_a_live_source(plan, back):
    """A buffer of a storage's second instance, and the buffer of a parameter
    (on the device at every step)."""
    g = memfit.load(plan["graph"])
    r = min(back)
    second = max((b for b in plan["buffers"] if b.get("storage") == r), key=lambda b: b["start"])
    source = next(b for b in plan["buffers"] if "storage" in b and g.tensors[b["storage"]].role == "parameter")
    return second, source


def test_overlapping_instances_are_rejected(case, memfit_cli, tmp_path):
    _, plan, back = case
    bad = copy.deepcopy(plan)
    second, source = second_instance_and_a_live_source(bad, back)
    second["offset"] = source["offset"]
    with pytest.raises(memfit.Error, match="overlaps live"):
        execute(bad, arena=True)
    path = tmp_path / "bad.plan.json"
    path.write_text(json.dumps(bad))
    r = subprocess.run([memfit_cli, "simulate", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and "fails the checker" in r.stderr, r.stderr
    # Two buffers of one storage reserved at the same step: ambiguous.
    twice = copy.deepcopy(plan)
    second, _ = second_instance_and_a_live_source(twice, back)
    second["start"] = 0
    with pytest.raises(memfit.Error, match="placed twice"):
        load_plan(twice)


def test_an_instance_without_a_buffer_is_an_error(case, memfit_cli, tmp_path):
    _, plan, back = case
    bad = copy.deepcopy(plan)
    second, _ = second_instance_and_a_live_source(bad, back)
    bad["buffers"].remove(second)
    with pytest.raises(memfit.Error, match="none of its buffers covers"):
        execute(bad, arena=True)
    execute(bad, arena=False)  # the steps alone are fine
    path = tmp_path / "missing.plan.json"
    path.write_text(json.dumps(bad))
    r = subprocess.run([memfit_cli, "simulate", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and "has no buffer covering" in r.stderr, r.stderr


def test_version_1_plans_still_run(zoo, memfit_cli, tmp_path):
    """Version 1 placed each storage once; its buffers are used for the whole run."""
    graph_path = zoo(*CASES["mlp-sgd"])
    path = tmp_path / "p.json"
    subprocess.run([memfit_cli, "plan", str(graph_path), "-o", str(path)], check=True, capture_output=True)
    plan = json.loads(path.read_text())
    plan["version"] = 1
    assert_bit_exact(memfit.run(str(graph_path)), execute(plan, arena=True).outputs)
