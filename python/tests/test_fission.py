"""Fissioned graphs run through the PyTorch executor equal the unsplit graph.

For each model: the whole training step (forward, loss, backward, SGD
update), micro-batched by `memfit fission` along the batch into parts (an
uneven last part included), runs op by op in float64 from the same sources
and the same RNG seed; the loss and every updated parameter must equal the
unsplit run's within 1e-12 relative. Dropout (bert-tiny) draws its mask
whole before the parts, so the same numbers come out.
"""

import subprocess

import pytest
import torch

import memfit

RTOL = 1e-12

# name, zoo args, parts
CASES = [
    ("mlp", ["--batch", "5"], 2),
    ("mlp", ["--batch", "5"], 3),
    ("bert-tiny", ["--batch", "3", "--seq", "8"], 3),
    ("vgg16", ["--image", "32", "--batch", "3"], 2),
    ("unet", ["--image", "32", "--batch", "2"], 2),
    ("vit-tiny", ["--image", "32", "--batch", "2"], 2),
]


def fission(cli, graph, out, parts):
    done = subprocess.run([cli, "fission", str(graph), "--dim", "batch", "--parts", str(parts), "-o", str(out)],
                          check=True, capture_output=True, text=True)
    return done.stdout


@pytest.mark.parametrize("name,args,parts", CASES, ids=[f"{c[0]}-x{c[2]}" for c in CASES])
def test_fissioned_step_equals_unsplit(memfit_cli, zoo, tmp_path, name, args, parts):
    graph = zoo(name, *args, "--train")
    split = tmp_path / "split.json"
    report = fission(memfit_cli, graph, split, parts)
    assert f"x{parts}" in report
    whole = memfit.run(memfit.load(graph), seed=3, dtype=torch.float64)
    pieces = memfit.run(memfit.load(split), seed=3, dtype=torch.float64)
    assert whole.keys() == pieces.keys()
    for key, expected in whole.items():
        got = pieces[key]
        assert got.shape == expected.shape, key
        scale = expected.abs().max().item() or 1.0
        err = (got - expected).abs().max().item() / scale
        assert err <= RTOL, f"{key}: relative error {err:.3g}"
