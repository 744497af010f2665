"""The pybind11 module _memfit over libmemfit."""

import json
import subprocess

import pytest

_memfit = pytest.importorskip("_memfit")


def test_zoo_stats_plan_and_simulate():
    text = _memfit.zoo("mlp", batch=8, train=True, optimizer="adam")
    graph = json.loads(text)
    assert graph["format"] == "memfit.graph"
    stats = _memfit.stats(text)
    assert stats["param_count"] == 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    assert stats["optimizer_state_bytes"] == 2 * stats["param_bytes"]
    plan = json.loads(_memfit.plan(text, device="a100", time_limit=2.0))
    assert plan["arena_bytes"] == plan["lower_bound_bytes"]
    sim = _memfit.simulate(json.dumps(plan), device="h200")
    assert sim["peak_bytes"] <= plan["arena_bytes"]
    assert sim["latency_ms"] > 0
    assert "mlp" in _memfit.zoo_models()


def test_stats_are_the_cli_stats(memfit_cli, tmp_path):
    # One JSON form of the stats (StatsToJson): _memfit.stats returns its fields Python has always had.
    text = _memfit.zoo("bert-tiny", batch=2, seq=8, train=True)
    path = tmp_path / "g.json"
    path.write_text(text)
    cli = json.loads(subprocess.run([memfit_cli, "stats", "--json", str(path)], capture_output=True, text=True,
                                    check=True).stdout)
    stats = _memfit.stats(text)
    assert list(stats) == ["ops", "tensors", "param_count", "param_bytes", "activation_bytes", "gradient_bytes",
                           "optimizer_state_bytes", "flops", "peak_bytes", "peak_op"]
    assert stats == {key: cli[key] for key in stats}
    assert isinstance(stats["flops"], float) and isinstance(stats["peak_bytes"], int) and stats["peak_op"]


def test_errors_become_memfit_error(tmp_path):
    with pytest.raises(_memfit.Error, match="unknown field 'colour'"):
        graph = json.loads(_memfit.zoo("mlp", batch=2))
        graph["tensors"][0]["colour"] = "red"
        _memfit.validate(json.dumps(graph))
    with pytest.raises(_memfit.Error, match="no-such-model"):
        _memfit.zoo("no-such-model")
    with pytest.raises(ValueError):
        _memfit.simulate(_memfit.zoo("mlp", batch=2), device="tpu")


def test_save_and_load_round_trip(tmp_path):
    text = _memfit.zoo("bert-tiny", batch=2, seq=8, train=True)
    path = str(tmp_path / "g.json")
    _memfit.save(text, path)
    assert _memfit.load(path) == text
