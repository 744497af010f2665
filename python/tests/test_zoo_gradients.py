"""memfit's autodiff against torch.autograd on the zoo's models.

For each model: build the training graph with --no-update, run its forward ops
under autograd (parameters require grad), differentiate the loss with
torch.autograd.grad, and compare with the graph's own "<param>.grad" outputs
computed by memfit's backward ops. Both sides see the same forward values, so
dropout masks agree. Small models run in float64; the two with 100M+
parameters (vgg16's and fcn8's 4096-wide layers, gpt2-small's embeddings) in float32 to stay
fast.

Run `python -m memfit.verify G.json` for the per-parameter table.
"""

import pytest
import torch

import memfit
from memfit.verify import check_gradients

RTOL = 1e-5

# name, CLI args, dtype
MODELS = [
    ("mlp", ["--batch", "4"], torch.float64),
    ("bert-tiny", ["--batch", "2", "--seq", "16"], torch.float64),
    ("resnet-18", ["--image", "32", "--batch", "2"], torch.float64),
    ("resnet-50", ["--image", "32", "--batch", "2"], torch.float64),
    ("vit-tiny", ["--image", "32", "--batch", "2"], torch.float64),
    ("mobilenet-v2", ["--image", "32", "--batch", "2"], torch.float64),
    ("densenet121", ["--image", "32", "--batch", "2"], torch.float64),
    ("unet", ["--image", "32", "--batch", "1"], torch.float64),
    ("vgg16", ["--image", "32", "--batch", "1"], torch.float32),
    # keras_segmentation's nets: zero padding, cropping, nearest upsampling.
    ("fcn8", ["--image", "32", "--width", "64", "--batch", "1"], torch.float32),
    ("segnet", ["--image", "16", "--width", "32", "--batch", "2"], torch.float64),
    ("vgg-unet", ["--image", "16", "--width", "32", "--batch", "1"], torch.float64),
    ("gpt2-small", ["--seq", "8", "--batch", "1"], torch.float32),
]

def train_graph(zoo, name, args):
    return memfit.load(zoo(name, *args, "--train", "--no-update"))


@pytest.mark.parametrize("name,args,dtype", MODELS, ids=[m[0] for m in MODELS])
def test_gradients_match_autograd(zoo, name, args, dtype):
    g = train_graph(zoo, name, args)
    result = check_gradients(g, seed=0, dtype=dtype)
    assert not result.missing, f"{name}: no memfit gradient for {result.missing}"
    params = {t.name for t in g.tensors if t.role == "parameter" and t.alias_of is None}
    assert set(result.errors) == params
    print(f"\n{name}: loss {result.loss:.6g} max relative gradient error {result.max_error:.3e} ({result.worst()})")
    assert result.max_error <= RTOL, f"{name}: worst {result.worst()} {result.max_error:.3e}"


@pytest.mark.parametrize("name", ["bert-tiny", "gpt2-small", "vit-tiny"])
def test_zoo_graph_runs_unmodified(zoo, name):
    """Every op of the zoo graphs names an overload torch has (aten.transpose.int, ...)."""
    args = dict((m[0], m[1]) for m in MODELS)[name]
    outputs = memfit.run(train_graph(zoo, name, args), phases=["forward"])
    assert outputs


def test_check_detects_a_wrong_backward_rule(zoo):
    """The check is not vacuous: corrupt one backward op and it fails."""
    g = train_graph(zoo, "mlp", ["--batch", "4"])
    mm = next(op for op in g.ops if op.phase == "backward" and op.type == "aten.mm")
    mm.inputs = [mm.inputs[0], mm.inputs[1]]
    scale = next(op for op in g.ops if op.phase == "backward" and op.type == "aten.threshold_backward")
    scale.attrs["threshold"] = 0.5
    result = check_gradients(g, dtype=torch.float64)
    assert result.max_error > 1e-3


def test_dropout_masks_are_shared(zoo):
    """bert-tiny has dropout (p=0.1): a different seed changes the loss, and the check still holds."""
    g = train_graph(zoo, "bert-tiny", ["--batch", "2", "--seq", "16"])
    assert any(op.type == "aten.native_dropout" for op in g.ops)
    a = check_gradients(g, seed=1)
    b = check_gradients(g, seed=2)
    assert a.loss != b.loss
    assert max(a.max_error, b.max_error) <= RTOL
