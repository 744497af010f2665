"""memfit optimize's plans run for real: an optimized plan (reordered, with
recomputation and swapping) executed by the PyTorch executor gives outputs,
gradients and updated parameters bit-identical to the eager program-order
run, with and without the arena, on models with dropout (RNG replay on
recompute) and batch norm (running statistics updated once)."""

import json
import subprocess

import pytest

import memfit
from memfit.plan import execute
from test_plan_executor import assert_bit_exact

CASES = {
    "mlp-sgd": ("mlp", "--batch", "256", "--train"),
    "bert-tiny-dropout": ("bert-tiny", "--batch", "16", "--seq", "128", "--train"),
    "resnet-18-bn": ("resnet-18", "--batch", "8", "--image", "64", "--train", "--momentum", "0.9"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def optimized(request, zoo, memfit_cli, tmp_path_factory):
    name, *args = CASES[request.param]
    graph_path = zoo(name, *args)
    out = tmp_path_factory.mktemp("opt-" + request.param)
    plans = {}
    # The smallest memory within 1.5x the latency: as much recomputation and
    # swapping as the optimizer finds worthwhile; and a plain memory limit.
    for label, limit in (("lat", ["--lat-limit-ratio", "1.5"]), ("mem", ["--mem-limit-ratio", "0.85"])):
        path = out / f"{label}.plan.json"
        r = subprocess.run([memfit_cli, "optimize", str(graph_path), *limit, "--time-budget", "3", "-o", str(path)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        plans[label] = json.loads(path.read_text())
    return graph_path, plans


def kinds(plan):
    return {s["kind"] for s in plan["steps"]}


def test_optimized_plans_recompute_and_fit(optimized):
    graph_path, plans = optimized
    assert "recompute" in kinds(plans["lat"]) or "swap_out" in kinds(plans["lat"])
    for plan in plans.values():
        assert plan["arena_bytes"] <= plan["simulated"]["peak_bytes"] * 1.01 + 4096


def test_optimized_plans_match_eager(optimized):
    graph_path, plans = optimized
    ref = memfit.run(str(graph_path))
    for label, plan in plans.items():
        for arena in (False, True):
            run = execute(plan, arena=arena)
            assert_bit_exact(ref, run.outputs)


def test_state_written_in_place_matches_eager(optimized):
    """Parameters, optimizer state and BatchNorm running statistics (written
    in place, once, even where the plan recomputes a batch norm)."""
    import torch
    from memfit.executor import make_sources

    graph_path, plans = optimized
    g = memfit.load(str(graph_path))
    sources = make_sources(g, seed=0)
    persistent = [t.name for t in g.tensors if t.role in ("parameter", "buffer", "optimizer_state")
                  and t.producer is None and t.alias_of is None]
    ref = {k: v.clone() for k, v in sources.items()}
    memfit.run(str(graph_path), ref)
    for plan in plans.values():
        for arena in (False, True):
            got = {k: v.clone() for k, v in sources.items()}
            execute(plan, got, arena=arena)
            for name in persistent:
                assert torch.equal(ref[name], got[name]), name
