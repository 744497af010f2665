"""memfit.report (measured vs simulated peak) and memfit.profile (cost table
round trip through `memfit simulate --costs`)."""

import json
import subprocess

import pytest

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
    table = profile(graph, device="cpu", warmup=1, repeats=2)
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
    cold = profile(graph, device="cpu", warmup=0, repeats=2, clock="cpu", stat="min", cold=True)
    assert [e["op"] for e in cold["entries"]] == [e["op"] for e in table["entries"]]
    with pytest.raises(memfit.Error, match="stat 'mode'"):
        profile(graph, stat="mode")
    with pytest.raises(memfit.Error, match="clock 'sundial'"):
        profile(graph, clock="sundial")
    with pytest.raises(memfit.Error, match="clock cpu times the CPU"):
        profile(graph, device="cuda", clock="cpu")
