"""memfit.report (measured vs simulated peak) and memfit.profile (cost table
round trip through `memfit simulate --costs`)."""

import json
import statistics
import subprocess

import pytest
import torch

import memfit
from memfit.profile import cost_key, is_pure_view, profile
from memfit.report import measure


@pytest.mark.parametrize("name,args", [("mlp", ["--batch", "4"]), ("resnet-18", ["--image", "32", "--batch", "2"])])
def test_measured_peak_is_close_to_simulated(zoo, memfit_cli, name, args):
    r = measure(zoo(name, *args, "--train", "--no-update"), cli=memfit_cli)
    assert r.tracked_bytes > 0 and r.allocator_bytes > 0 and r.simulated_bytes > 0
    # The tracked figure counts the storages the simulator counts (between
    # allocation and free step); it differs only by sources generated at their
    # first use and by workspace the simulator adds: within 10%.
    assert 0.9 <= r.tracked_ratio <= 1.1, r
    # The allocator also sees op temporaries (conv's im2col, reduction scratch)
    # and the executor's copies; by the same storages it cannot be far below.
    assert 0.5 <= r.allocator_ratio <= 3.0, r


def test_cost_table_round_trip(zoo, memfit_cli, tmp_path):
    graph = zoo("mlp", "--batch", "4", "--train", "--no-update")
    table = profile(graph, device="cpu", warmup=1, repeats=2, context="alone")
    assert table["entries"] and all(e["latency_us"] >= 0 and e["samples"] == 2 for e in table["entries"])
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(table))
    proc = subprocess.run([memfit_cli, "simulate", str(graph), "--device", "cpu", "--costs", str(path), "--json"],
                          check=True, capture_output=True, text=True)
    g = memfit.load(graph)
    keys = {cost_key(g, op) for op in g.ops if not is_pure_view(g, op)}
    assert len(keys) == len(table["entries"])
    # Every op with a measured key uses it, views included when they share a key with a measured op (never here).
    expected = sum(1 for op in g.ops if cost_key(g, op) in keys)
    assert json.loads(proc.stdout)["measured_ops"] == expected


def test_profile_cli_writes_a_table(zoo, tmp_path):
    import sys
    out = tmp_path / "c.json"
    graph = zoo("mlp", "--batch", "4")
    subprocess.run([sys.executable, "-m", "memfit.profile", str(graph), "--device", "cpu", "-o", str(out),
                    "--warmup", "0", "--repeats", "1"], check=True, capture_output=True,
                   env={**__import__("os").environ, "PYTHONPATH": str(memfit.__path__[0].rsplit("/", 1)[0])})
    assert json.loads(out.read_text())["format"] == "memfit.costs"


def test_html_overlays_the_measured_run(zoo, memfit_cli, tmp_path):
    from memfit.report import measured_series, write_html
    graph = zoo("mlp", "--batch", "4", "--train", "--no-update")
    series = measured_series(graph)
    plan = memfit.plan.program_order_plan(graph)
    assert len(series["bytes_after_step"]) == len(plan.steps)
    assert max(series["bytes_after_step"]) == memfit.execute(plan).peak_bytes
    out = tmp_path / "r.html"
    kept = tmp_path / "m.json"
    line = write_html(graph, out, cli=memfit_cli, measured_out=str(kept))
    assert "wrote" in line
    page = out.read_text()
    assert '"measured":{"label":"executor, tracked storages"' in page
    assert json.loads(kept.read_text())["bytes_after_step"] == series["bytes_after_step"]


def test_profile_cpu_clock(zoo):
    graph = zoo("mlp", "--batch", "4")
    table = profile(graph, device="cpu", warmup=0, repeats=1, clock="cpu")
    assert table["entries"] and all(e["latency_us"] >= 0 for e in table["entries"])
    alone = profile(graph, device="cpu", warmup=0, repeats=1, clock="cpu", context="alone")
    cold = profile(graph, device="cpu", warmup=0, repeats=2, clock="cpu", stat="min", cold=True, context="alone")
    assert [e["op"] for e in cold["entries"]] == [e["op"] for e in alone["entries"]]
    with pytest.raises(memfit.Error, match="cold evicts the caches before an op timed alone"):
        profile(graph, cold=True)
    with pytest.raises(memfit.Error, match="context 'nearby'"):
        profile(graph, context="nearby")
    with pytest.raises(memfit.Error, match="stat 'mode'"):
        profile(graph, stat="mode")
    with pytest.raises(memfit.Error, match="clock 'sundial'"):
        profile(graph, clock="sundial")
    with pytest.raises(memfit.Error, match="clock cpu times the CPU"):
        profile(graph, device="cuda", clock="cpu")


def test_step_profile_times_every_op_in_the_generated_step(zoo):
    """context="step": every op of program order, views included, timed inside the
    generated step; an entry's samples are its ops times the timed runs; every
    entry has its measured workspace."""
    graph = zoo("mlp", "--batch", "4", "--train")
    g = memfit.load(graph)
    table = profile(graph, device="cpu", warmup=1, repeats=3, clock="cpu")
    count = {}
    for op in g.ops:
        count[cost_key(g, op)] = count.get(cost_key(g, op), 0) + 1
    got = {(e["op"], e["overload"], tuple(tuple(x) for x in e["input_shapes"]), e["dtype"]): e for e in table["entries"]}
    assert set(got) == set(count)  # views too: the generated code pays for them
    assert any(is_pure_view(g, op) for op in g.ops)
    for key, e in got.items():
        assert e["samples"] == 3 * count[key] and e["latency_us"] >= 0
        assert isinstance(e["workspace_bytes"], int) and e["workspace_bytes"] >= 0
    assert "workspace_bytes" not in profile(graph, warmup=0, repeats=1, workspace=False)["entries"][0]


def test_step_profiler_scales_the_ops_to_the_plain_step(zoo):
    from memfit.profile import StepProfiler
    graph = zoo("mlp", "--batch", "4", "--train")
    steps = StepProfiler(graph, clock="cpu")
    for _ in range(3):
        steps.run()
    assert steps.runs == 3 and len(steps.plain_s) == 3
    factor = steps.scale(skip=1)
    assert factor > 0
    total = sum(sum(v) for v in steps.samples(skip=1).values()) / 2  # two runs after the skip
    assert total == pytest.approx(statistics.fmean(steps.plain_s[1:]) * 1e6, rel=1e-9)


def test_workspace_is_the_peak_above_what_the_call_leaves():
    from memfit.profile import allocation_peak_and_end
    # ones(1000) is 4000 bytes of scratch, freed inside; the sum's 4 bytes remain.
    peak, end, workspace = allocation_peak_and_end(lambda: torch.ones(1000).sum())
    assert (end, workspace) == (4, 4000) and peak == 4004
    x = torch.randn(64, 64)
    assert allocation_peak_and_end(lambda: torch.mm(x, x))[2] == 0


def test_measured_workspace_goes_into_the_simulated_peak(zoo, tmp_path):
    """The cost table's workspace_bytes reach the simulator: a huge workspace on one
    key puts the peak at that op; 1 MiB more there is exactly 1 MiB more peak."""
    native = pytest.importorskip("_memfit")
    del native
    graph = zoo("resnet-18", "--image", "32", "--batch", "2", "--train")
    g = memfit.load(graph)
    conv = next(op for op in g.ops if op.type == "aten.convolution_backward")
    key = cost_key(g, conv)
    base = {"format": "memfit.costs", "version": 1, "device": "cpu", "entries": []}

    def peak(workspace):
        entry = {"op": key[0], "overload": key[1], "input_shapes": [list(x) for x in key[2]], "dtype": key[3],
                 "latency_us": 10.0}
        if workspace is not None:
            entry["workspace_bytes"] = workspace
        path = tmp_path / "c.json"
        path.write_text(json.dumps(dict(base, entries=[entry])))
        return memfit.simulate(graph, device="cpu", costs=str(path))["peak_bytes"]

    gib = 1 << 30
    assert peak(gib + (1 << 20)) - peak(gib) == 1 << 20
    assert peak(gib) > gib > peak(0)
    # Without the field the registry's estimate stays (resnet's conv im2col: not 0).
    assert peak(None) >= peak(0)
