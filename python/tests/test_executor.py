"""memfit.run on small graphs: binding, sources, in-place updates, errors."""

import copy

import pytest
import torch

import memfit
from memfit.graph import Graph, Op, Tensor


def tiny_graph():
    g = Graph(name="tiny")
    g.tensors = [
        Tensor(0, "x", [2, 3], "f32", "input"),
        Tensor(1, "w", [4, 3], "f32", "parameter"),
        Tensor(2, "w.t", [3, 4], "f32", "parameter", alias_of=1),
        Tensor(3, "y", [2, 4], "f32", "activation"),
        Tensor(4, "z", [2, 4], "f32", "output"),
    ]
    g.ops = [
        Op(0, "t", "aten.t", inputs=[1], outputs=[2]),
        Op(1, "mm", "aten.mm", inputs=[0, 2], outputs=[3]),
        Op(2, "add", "aten.add", "Tensor", inputs=[3, 3], outputs=[4], attrs={"alpha": 2}),
    ]
    for op in g.ops:
        for t in op.outputs:
            g.tensors[t].producer = op.id
    g.outputs = [4]
    return g


def test_runs_tiny_graph_with_given_inputs():
    x, w = torch.randn(2, 3), torch.randn(4, 3)
    out = memfit.run(tiny_graph(), {"x": x, "w": w})
    assert set(out) == {"z"}
    torch.testing.assert_close(out["z"], 3 * (x @ w.t()))


def test_keep_all_and_free_after_last_use():
    out = memfit.run(tiny_graph(), keep_all=True)
    assert {"x", "w", "w.t", "y", "z"} <= set(out)
    assert set(memfit.run(tiny_graph())) == {"z"}


def test_json_round_trip():
    g = tiny_graph()
    again = memfit.from_dict(memfit.to_dict(g))
    assert memfit.to_dict(again) == memfit.to_dict(g)


def test_generated_sources_are_deterministic():
    a = memfit.run(tiny_graph(), seed=3)["z"]
    b = memfit.run(tiny_graph(), seed=3)["z"]
    c = memfit.run(tiny_graph(), seed=4)["z"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_dtype_override():
    out = memfit.run(tiny_graph(), dtype=torch.float64)
    assert out["z"].dtype == torch.float64


def test_unknown_op_is_a_clear_error():
    g = tiny_graph()
    g.ops[2].type = "aten.no_such_op"
    with pytest.raises(memfit.Error, match="op 'add'.*unknown operator aten.no_such_op"):
        memfit.run(g)


def test_a_library_op_imports_its_library(tmp_path):
    """A graph captured where torchvision was imported runs in a process that has not imported it."""
    script = tmp_path / "run_roi_align.py"
    script.write_text("""
import sys
import torch
import memfit
from memfit.graph import Graph, Op, Tensor
g = Graph(name="pool")
g.tensors = [Tensor(0, "x", [1, 2, 4, 4], "f32", "input"), Tensor(1, "rois", [1, 5], "f32", "input"),
             Tensor(2, "y", [1, 2, 2, 2], "f32", "output", producer=0)]
g.ops = [Op(0, "pool", "torchvision.roi_align", inputs=[0, 1], outputs=[2],
            attrs={"spatial_scale": 1.0, "pooled_height": 2, "pooled_width": 2, "sampling_ratio": 2, "aligned": False})]
g.outputs = [2]
assert "torchvision" not in sys.modules
x = torch.arange(32.0).view(1, 2, 4, 4)
y = memfit.run(g, {"x": x, "rois": torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]])})["y"]
import torchvision
assert torch.equal(y, torchvision.ops.roi_align(x, torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]]), 2, 1.0, 2, False))
g.ops[0].type = "nolibrary.op"
try:
    memfit.run(g, {"x": x, "rois": torch.zeros(1, 5)})
except memfit.Error as e:
    print(e)
""")
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(memfit.__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "op 'pool': unknown operator nolibrary.op" in done.stdout


def test_shape_mismatch_names_op_and_tensor():
    g = tiny_graph()
    g.tensors[3].shape = [2, 5]
    with pytest.raises(memfit.Error, match=r"op 'mm' \(aten.mm\): output 'y' has shape \[2, 4\], the graph declares \[2, 5\]"):
        memfit.run(g)


def test_missing_input_without_generation():
    with pytest.raises(memfit.Error, match="missing input 'x'"):
        memfit.run(tiny_graph(), {"w": torch.randn(4, 3)}, generate=False)


def test_wrong_input_shape_and_unknown_name():
    with pytest.raises(memfit.Error, match="input 'x' has shape"):
        memfit.run(tiny_graph(), {"x": torch.randn(3, 3)})
    with pytest.raises(memfit.Error, match="no tensor named 'nope'"):
        memfit.run(tiny_graph(), {"nope": torch.randn(3, 3)})


def test_index_inputs_follow_their_consumers(zoo):
    g = memfit.load(zoo("bert-tiny", "--batch", "2", "--seq", "16"))
    sources = memfit.make_sources(g)
    emb = {t.name: t.shape for t in g.tensors}
    for name, value in sources.items():
        if not value.dtype.is_floating_point and value.dtype != torch.bool:
            assert value.min() >= 0
    labels = [v for n, v in sources.items() if "label" in n]
    assert labels and all(int(v.max()) < 2 for v in labels)  # 2-class head
    ids = [v for n, v in sources.items() if "input_ids" in n]
    assert ids and int(ids[0].max()) < emb["bert.embeddings.word_embeddings.weight"][0]


def test_batchnorm_running_stats_are_updated_in_place(zoo):
    g = memfit.load(zoo("resnet-18", "--image", "32", "--batch", "2"))
    sources = memfit.make_sources(g)
    before = {n: v.clone() for n, v in sources.items() if n.endswith("running_mean")}
    assert before
    memfit.run(g, sources)
    changed = [n for n in before if not torch.equal(before[n], sources[n])]
    assert len(changed) == len(before)


def test_backward_runs_from_a_recorded_forward(zoo):
    """Backward ops alone, fed with the forward's tensors by name."""
    g = memfit.load(zoo("mlp", "--batch", "4", "--train", "--no-update"))
    sources = memfit.make_sources(g)
    full = memfit.run(g, sources, keep_all=True)
    fwd = memfit.run(g, sources, phases=["forward"], keep_all=True)
    bwd = memfit.run(g, fwd, phases=["backward"])
    for name, value in bwd.items():
        if name.endswith(".grad"):
            torch.testing.assert_close(value, full[name], rtol=0, atol=0)
