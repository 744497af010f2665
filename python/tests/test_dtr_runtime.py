"""The live DTR runtime (memfit.dtr_run) runs zoo graphs with real tensors under a byte budget,
evicting and recomputing them, and gives outputs, gradients, updated parameters and BatchNorm
running statistics bit-identical to eager memfit.run; hand-made graphs pin down the exact
eviction / recomputation sequence and the in-place rule."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

import memfit
from memfit.dtr import HEURISTICS, analyze, dtr_run
from conftest import ROOT

# Budget ratios per model: a moderate one and the lowest that still runs (with the dtr heuristic)
# at these sizes. The floor comes from what must be resident at once in program order: every
# source, and at the end of the backward every weight gradient (the optimizer reads them after
# its first parameter write, so they cannot be recomputed) plus the operands of the op running.
CASES = {
    "bert-tiny": (("bert-tiny", "--batch", "16", "--seq", "128", "--train"), (0.6, 0.55)),
    # Without the update the gradients are the outputs.
    "bert-tiny-grads": (("bert-tiny", "--batch", "16", "--seq", "128", "--train", "--no-update"), (0.6, 0.55)),
    "resnet-18": (("resnet-18", "--batch", "32", "--image", "64", "--train"), (0.9, 0.85)),
}
# The 3-layer MLP's peak (end of its backward: parameters, gradients, the last matmul's operands)
# is irreducible: it runs at ratio 1.0 without evictions, and below it runs out of memory.
MLP = ("mlp", "--batch", "256", "--train")


def assert_same(ref, got):
    assert set(ref) <= set(got)
    for name, value in ref.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert torch.equal(got[name], value), f"{name}: max |diff| {(got[name] - value).abs().max().item()}"


@pytest.fixture(scope="module")
def eager(zoo):
    """(graph path, sources, eager outputs, sources after the eager run) per case."""
    cache = {}

    def get(args):
        if args not in cache:
            g = memfit.load(str(zoo(*args)))
            sources = memfit.make_sources(g, seed=0)
            after = {k: v.clone() for k, v in sources.items()}
            cache[args] = (g, sources, memfit.run(g, after), after)
        return cache[args]

    return get


@pytest.mark.parametrize("case", sorted(CASES))
def test_zoo_models_bit_identical_under_budget(case, eager):
    args, ratios = CASES[case]
    g, sources, ref, ref_after = eager(args)
    for ratio in ratios:
        got_after = {k: v.clone() for k, v in sources.items()}
        r = dtr_run(g, got_after, budget_ratio=ratio)
        assert r.status == "ok"
        assert r.budget_bytes == int(ratio * r.unconstrained_peak_bytes)
        assert r.peak_bytes <= r.budget_bytes
        # The torch storages actually referenced follow the accounting.
        assert r.tracked_peak_bytes <= r.budget_bytes
        assert_same(ref, r.outputs)  # loss, updated parameters or gradients
        assert_same(ref_after, got_after)  # parameters, BatchNorm running statistics
        assert r.evictions > 0 and r.recomputations > 0 and r.recompute_cost > 0
        assert r.overhead == pytest.approx((r.compute_cost + r.recompute_cost) / r.compute_cost)


def test_recomputed_dropout_and_batch_norm(eager):
    """bert-tiny recomputes dropout (RNG replayed); resnet-18 recomputes BatchNorm (its running
    statistics writes undone): both runs above stay bit-identical."""
    for case, op_type in (("bert-tiny", "aten.native_dropout"), ("resnet-18", "aten.native_batch_norm")):
        args, ratios = CASES[case]
        g = eager(args)[0]
        r = dtr_run(g, budget_ratio=ratios[-1], record_events=True)
        by_name = {t.name: t for t in g.tensors}
        recomputed = {g.ops[by_name[e.split(" ", 1)[1]].producer].type for e in r.events if e.startswith("recompute")}
        assert op_type in recomputed, case


def test_every_heuristic(zoo, eager):
    """Every heuristic on mlp (ratio 1.0: no eviction needed) and on bert-tiny under pressure."""
    g, sources, ref, _ = eager(MLP)
    for h in HEURISTICS:
        r = dtr_run(g, budget_ratio=1.0, heuristic=h)
        assert r.evictions == 0 and r.recomputations == 0 and r.overhead == 1.0
        assert_same(ref, r.outputs)
    args, ratios = CASES["bert-tiny"]
    g, sources, ref, _ = eager(args)
    for h in HEURISTICS:
        r = dtr_run(g, budget_ratio=0.7, heuristic=h)
        assert r.evictions > 0 and r.peak_bytes <= r.budget_bytes, h
        assert_same(ref, r.outputs)


def test_too_small_budget_is_an_error(zoo):
    path = zoo(*MLP)
    with pytest.raises(memfit.Error, match="out of memory at op"):
        dtr_run(path, budget_ratio=0.95)
    with pytest.raises(memfit.Error, match="out of memory before the first op"):
        dtr_run(path, budget_bytes=1000)


def test_bad_arguments(zoo):
    path = zoo(*MLP)
    with pytest.raises(memfit.Error, match="unknown heuristic 'belady'"):
        dtr_run(path, budget_ratio=0.5, heuristic="belady")
    with pytest.raises(memfit.Error, match="exactly one"):
        dtr_run(path)
    with pytest.raises(memfit.Error, match="exactly one"):
        dtr_run(path, budget_ratio=0.5, budget_bytes=10)
    with pytest.raises(memfit.Error, match="not a source"):
        dtr_run(path, {"relu": torch.zeros(256, 1024)}, budget_ratio=1.0)


# ---- hand-made graphs ----------------------------------------------------------------

def graph(tensors, ops, outputs):
    """A memfit graph dict: tensors as (name, role[, alias_of]), all f32[256] (1 KiB); ops as
    (name, type, overload, inputs, outputs) with tensors named. Version 2, with the op flags
    the registry gives these ops (only the in-place ones have any)."""
    ids = {name: i for i, (name, *_) in enumerate(tensors)}
    return {
        "format": "memfit.graph", "version": 2, "name": "hand",
        "tensors": [dict(id=i, name=name, shape=[256], dtype="f32", role=role,
                         **({"alias_of": ids[rest[0]]} if rest else {}))
                    for i, (name, role, *rest) in enumerate(tensors)],
        "ops": [dict(id=i, name=name, type=typ, overload=ov, inputs=[ids[x] for x in ins],
                     outputs=[ids[x] for x in outs], **({"flags": {"inplace": True}} if typ.endswith("_") else {}))
                for i, (name, typ, ov, ins, outs) in enumerate(ops)],
        "outputs": [ids[x] for x in outputs],
    }


KIB = 1024
CHAIN = graph(
    [("x", "input"), ("a", "activation"), ("b", "activation"), ("c", "activation"), ("d", "activation"),
     ("e", "activation"), ("f", "output")],
    [("a", "aten.neg", "", ["x"], ["a"]),
     ("b", "aten.sin", "", ["x"], ["b"]),
     ("c", "aten.cos", "", ["x"], ["c"]),
     ("d", "aten.neg", "", ["c"], ["d"]),
     ("e", "aten.add", "Tensor", ["d", "a"], ["e"]),
     ("f", "aten.add", "Tensor", ["e", "b"], ["f"])],
    ["f"])


def test_chain_events_lru():
    """Budget 4 KiB = x (pinned) + 3 tensors; the unconstrained peak is 5 KiB (x, a, b, c, d at op d).
      a, b, c        resident: x a b c = 4 KiB
      d = neg(c)     c locked; evict the least recently used of {a, b}: a (b was computed later)
                     -> x b c d; c's last use: released -> x b d
      e = add(d, a)  d locked; recompute a = neg(x) (3 + 1 KiB fits) -> x b d a; a locked;
                     e needs 1 KiB, only b is evictable: evict b -> x d a e;
                     a and d released -> x e
      f = add(e, b)  e locked; recompute b = sin(x) -> x e b; f fits (4 KiB); b, e released
    """
    r = dtr_run(CHAIN, budget_bytes=4 * KIB, heuristic="lru", record_events=True)
    assert r.unconstrained_peak_bytes == 5 * KIB
    assert r.events == ["evict a", "release c", "recompute a", "evict b", "release a", "release d",
                        "recompute b", "release b", "release e"]
    assert (r.evictions, r.eager_evictions, r.recomputations, r.peak_bytes) == (2, 5, 2, 4 * KIB)
    assert torch.equal(r.outputs["f"], memfit.run(CHAIN)["f"])


def test_chain_events_largest():
    """The same budget with `largest`: a and b are equally large at op d, and ties go to the
    storage that became evictable last (b), so b is evicted instead; e then fits without
    evicting (x a d e = 4 KiB after c's release), and only b is recomputed, for f."""
    r = dtr_run(CHAIN, budget_bytes=4 * KIB, heuristic="largest", record_events=True)
    assert r.events == ["evict b", "release c", "release a", "release d", "recompute b", "release b", "release e"]
    assert (r.evictions, r.recomputations, r.peak_bytes) == (1, 1, 4 * KIB)
    assert torch.equal(r.outputs["f"], memfit.run(CHAIN)["f"])


IN_PLACE = graph(
    [("x", "parameter"), ("y", "input"), ("a", "activation"), ("b", "activation"), ("x_", "parameter", "x"),
     ("c", "activation"), ("d", "activation"), ("e", "activation"), ("f", "output")],
    [("a", "aten.mul", "Tensor", ["x", "y"], ["a"]),
     ("b", "aten.neg", "", ["y"], ["b"]),
     ("update", "aten.add_", "Tensor", ["x", "y"], ["x_"]),
     ("c", "aten.neg", "", ["y"], ["c"]),
     ("d", "aten.neg", "", ["c"], ["d"]),
     ("e", "aten.add", "Tensor", ["d", "a"], ["e"]),
     ("f", "aten.add", "Tensor", ["e", "b"], ["f"])],
    ["f", "x_"])


def test_in_place_write_blocks_eviction():
    """a = x * y is read after x is updated in place: recomputing a then would read the new x,
    so a may not be evicted, nor e (recomputing e would need a after a's last use); b, c, d may.
    Budget 5 KiB = x, y + 3: at op d (c locked) the
    least recently used storage is a, but only b is evictable; b is recomputed for f.
      a, b           x y a b; update writes x in place
      c              x y a b c
      d = neg(c)     evict b (not a) -> x y a c d; c released -> x y a d
      e = add(d, a)  x y a d e; a and d released -> x y e
      f = add(e, b)  recompute b = neg(y) -> x y e b; f -> 5 KiB
    """
    a = analyze(IN_PLACE)
    names = {memfit.load(IN_PLACE).tensors[r].name for r in a.recomputable}
    assert names == {"b", "c", "d"}
    r = dtr_run(IN_PLACE, budget_bytes=5 * KIB, heuristic="lru", record_events=True)
    assert r.events == ["evict b", "release c", "release a", "release d", "recompute b", "release b", "release e"]
    ref = memfit.run(IN_PLACE)
    assert_same(ref, r.outputs)
    assert set(r.outputs) == {"f", "x_", "x"}
    # With a budget one KiB smaller, a and the locked c leave nothing to evict for d.
    with pytest.raises(memfit.Error, match=r"out of memory at op 'd': need 1024 bytes, budget 4096"):
        dtr_run(IN_PLACE, budget_bytes=4 * KIB, heuristic="lru")


# ---- CLI ----------------------------------------------------------------------------

def cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "memfit.dtr", *map(str, args)], capture_output=True, text=True,
                          env=env)


def test_cli(tmp_path):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(CHAIN))
    r = cli(path, "--budget", 4 * KIB, "--heuristic", "lru", "--verify", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["verified"] and out["evictions"] == 2 and out["recomputations"] == 2
    r = cli(path, "--budget-ratio", "0.8", "--heuristic", "largest")
    assert r.returncode == 0 and "1 evictions" in r.stdout, r.stdout + r.stderr
    for bad, message in (([path, "--budget-ratio", "0.5", "--heuristic", "belady"], "unknown heuristic 'belady'"),
                         ([path], "one of the arguments --budget-ratio --budget is required"),
                         ([path, "--budget-ratio", "-1"], "--budget-ratio: must be positive")):
        r = cli(*bad)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    r = cli(path, "--budget", 100)
    assert r.returncode == 1 and "out of memory" in r.stderr


def test_dtr_score_and_costs(tmp_path):
    """h_DTR = c / (|s| x staleness) while nothing is evicted. With every op costing 1 the clock is
    1 + ops run: at op d (clock 4) a was last accessed at 2 and b at 3, so a scores 1/(1024 x 2),
    b 1/(1024 x 1), and a is evicted (as by lru). With a costing 10, a scores 10/(1024 x 2) > b's
    1/1024, and b is evicted (as by largest)."""
    unit = {op: 1.0 for op in "abcdef"}
    r = dtr_run(CHAIN, budget_bytes=4 * KIB, heuristic="dtr", costs=unit, record_events=True)
    assert r.events[:2] == ["evict a", "release c"] and r.cost_unit == "s"
    assert (r.compute_cost, r.recompute_cost, r.overhead) == (6.0, 2.0, 8.0 / 6.0)
    r = dtr_run(CHAIN, budget_bytes=4 * KIB, heuristic="dtr", costs=dict(unit, a=10.0), record_events=True)
    assert r.events[:2] == ["evict b", "release c"] and r.recompute_cost == 1.0
    with pytest.raises(memfit.Error, match="no cost for op 'f'"):
        dtr_run(CHAIN, budget_bytes=4 * KIB, costs={op: 1.0 for op in "abcde"})
    r = dtr_run(CHAIN, budget_bytes=4 * KIB, costs="measured")
    assert r.cost_unit == "s" and r.compute_cost > 0 and r.recompute_cost > 0
    from memfit.profile import profile
    table = tmp_path / "costs.json"
    table.write_text(json.dumps(profile(CHAIN, warmup=0, repeats=1)))
    r = dtr_run(CHAIN, budget_bytes=4 * KIB, costs=str(table))
    assert r.cost_unit == "s" and r.compute_cost > 0
    assert torch.equal(r.outputs["f"], memfit.run(CHAIN)["f"])
    # A malformed table is one memfit.Error naming the file and the field, never a raw exception.
    good = json.loads(table.read_text())
    entry = dict(good["entries"][0])
    for bad, message in (([1], r"not a memfit cost table"),
                         ({**good, "entries": 3}, r"entries: expected an array, got 3"),
                         ({**good, "entries": [7]}, r"entries\[0\]: expected an object, got 7"),
                         ({**good, "entries": [{**entry, "input_shapes": [["256"]]}]},
                          r"entries\[0\]\.input_shapes\[0\]\[0\]: expected an integer"),
                         ({**good, "entries": [{**entry, "latency_us": -1}]},
                          r"entries\[0\]\.latency_us: must be a non-negative number, got -1"),
                         ({**good, "entries": [{**entry, "op": None}]}, r"entries\[0\]\.op: expected a string")):
        table.write_text(json.dumps(bad))
        with pytest.raises(memfit.Error, match=re.escape(str(table)) + ": " + message):
            dtr_run(CHAIN, budget_bytes=4 * KIB, costs=str(table))
