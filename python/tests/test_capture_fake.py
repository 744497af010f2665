"""memfit.capture(..., fake=True): the training step traced on FakeTensors.

For every model of test_capture.py the fake capture must give the real
capture's graph: the same ops (type, overload, phase, inputs, outputs,
attributes) and tensors (shape, dtype, role, alias, view strides), with the
same source and output names. Only the names of intermediate tensors and ops
may differ: they are FX node names, and torch numbers them by how many nodes
of that kind the trace recorded (fake tracing records, then drops, an
aten.detach after each factory op; see fake_trace.drop_factory_detaches).

A model too large to run here (resnet50, batch 64, 224x224: a 5.3 GiB
step in program order) is captured in seconds by a process that stays under
2 GiB, and its graph passes `memfit validate` and `memfit stats`.
"""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit import fake_trace
from memfit.examples import TinyBert, conv_bn_dropout, weighted_sum
from fc_module import FcModule


def cross_entropy(out, x, y):
    return F.cross_entropy(out, y)


def mlp():
    return (nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)),
            (torch.randn(8, 16), torch.randint(0, 4, (8,))), cross_entropy, 1)


def resnet18():
    import torchvision

    return (torchvision.models.resnet18(num_classes=10), (torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))),
            cross_entropy, 1)


def bert():
    return TinyBert(), (torch.randint(0, 50, (2, 16)), torch.randint(0, 3, (2,))), cross_entropy, 1


def transformer_layer():
    model = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    return model, (torch.randn(2, 8, 32),), weighted_sum, None


def dropout_batchnorm():
    return conv_bn_dropout(), (torch.randn(4, 3, 8, 8),), weighted_sum, None


MODELS = {"mlp": mlp, "resnet18": resnet18, "bert": bert, "transformer_layer": transformer_layer,
          "dropout_batchnorm": dropout_batchnorm}


def structure(g):
    """The graph's JSON without metadata and without the names of intermediate tensors and ops."""
    d = memfit.to_dict(g)
    del d["metadata"]
    outputs = set(d["outputs"])
    for op in d["ops"]:
        del op["name"]
    for t in d["tensors"]:
        if g.tensors[t["id"]].producer is not None and t["id"] not in outputs and not t["name"].endswith(".grad"):
            del t["name"]
    return d


def validate(memfit_cli, g, tmp_path):
    path = tmp_path / f"{g.name}.json"
    memfit.save(g, path)
    for command in ("validate", "stats"):
        r = subprocess.run([memfit_cli, command, str(path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    return path


@pytest.mark.parametrize("optimizer", [None, "adam"])
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_fake_capture_is_the_real_graph(model_name, optimizer, memfit_cli, tmp_path):
    torch.manual_seed(0)
    model, inputs, loss_fn, k = MODELS[model_name]()
    model.train()
    kwargs = dict(loss_fn=loss_fn, name=model_name, num_module_inputs=k, optimizer=optimizer)
    real = memfit.capture(model, inputs, **kwargs)
    fake = memfit.capture(model, inputs, fake=True, **kwargs)
    assert structure(fake.graph) == structure(real.graph)
    assert fake.graph.metadata["tracing"] == "fake" and real.graph.metadata["tracing"] == "real"
    # No eager reference, no source values.
    assert fake.fake and fake.loss is None and not fake.grads and not fake.updated
    assert all(fake.graph.tensor_by_name(n).role not in ("parameter", "input") for n in fake.inputs)
    print(f"\n{model_name} optimizer={optimizer}: {len(real.graph.ops)} ops, {len(real.graph.tensors)} tensors; "
          f"real {real.seconds:.2f} s, fake {fake.seconds:.2f} s")
    if optimizer is None:
        path = validate(memfit_cli, fake.graph, tmp_path)
        # The fake graph runs (generated sources) and every result has the declared shape and dtype.
        out = memfit.run(memfit.load(path), fake.inputs)
        assert out[fake.graph.tensors[fake.graph.outputs[0]].name].dim() == 0


def test_fake_capture_leaves_the_module_alone():
    torch.manual_seed(0)
    model, inputs, loss_fn, k = dropout_batchnorm()
    before = {n: v.clone() for n, v in model.state_dict().items()}
    memfit.capture(model.train(), inputs, loss_fn=loss_fn, fake=True, optimizer="sgd-momentum")
    for n, v in model.state_dict().items():
        assert torch.equal(v, before[n]), n


def test_large_model_is_captured_without_running(memfit_cli, tmp_path):
    """resnet50 at batch 64, 224x224: fake-captured by a child process that never holds the step's memory."""
    pytest.importorskip("torchvision")
    path = tmp_path / "resnet50.json"
    argv = ["memfit.capture", "resnet50", "--fake", "--batch", "64", "--image", "224", "-o", str(path)]
    # The child reports its own peak resident memory (ru_maxrss, KiB on Linux).
    code = (f"import resource, runpy, sys\nsys.argv = {argv!r}\n"
            f"try:\n    runpy.run_module('memfit.capture', run_name='__main__')\n"
            f"except SystemExit as e:\n    assert not e.code, e.code\n"
            f"print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": str(memfit.__file__.rsplit("/", 2)[0]), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    print("\n" + r.stderr.strip().splitlines()[-1])
    child_peak_bytes = int(r.stdout.split()[-1]) * 1024
    validate(memfit_cli, memfit.load(path), tmp_path)
    s = subprocess.run([memfit_cli, "stats", "--json", str(path)], capture_output=True, text=True, check=True)
    step_bytes = json.loads(s.stdout)["peak_bytes"]
    g = memfit.load(path)
    assert g.tensor_by_name("input0").shape == [64, 3, 224, 224]
    assert any(op.type == "aten.convolution_backward" for op in g.ops)
    print(f"capture process peak RSS {child_peak_bytes / 2**30:.2f} GiB; the step's program-order peak "
          f"{step_bytes / 2**30:.2f} GiB")
    assert step_bytes > 4 * 2**30
    assert child_peak_bytes < 2 * 2**30


def test_an_op_without_meta_kernel_is_an_error(monkeypatch):
    # torch 1.13 has no meta kernel for convolution_backward; without memfit's
    # rule the capture must say so rather than run the real kernel.
    monkeypatch.setattr(fake_trace, "_META_RULES", {})
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    try:
        memfit.capture(model, (torch.randn(1, 3, 5, 5),), fake=True)
    except memfit.Error as e:
        assert "aten.convolution_backward" in str(e) and "fake=False" in str(e)
    else:
        # A torch whose meta kernels cover convolution_backward needs no rule.
        assert torch.__version__ >= "2"


def test_data_dependent_shapes_are_an_error():
    class Masked(FcModule):
        def forward(self, x):
            return self.fc(x)[x > 0]  # the output's size depends on the data

    with pytest.raises(memfit.Error, match="fake tensors"):
        memfit.capture(Masked(), (torch.randn(3, 4),), fake=True)


def test_cli_rejects_check_with_fake(tmp_path):
    argv = ["-m", "memfit.capture", "mlp", "--fake", "--check", "-o", str(tmp_path / "g.json")]
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                       env={"PYTHONPATH": str(memfit.__file__.rsplit("/", 2)[0])})
    assert r.returncode == 1 and "--check" in r.stderr


# ---- meta rules for the ops torch 1.13 has no meta kernel for ---------------------
# Each module reaches one (or two) of fake_trace._META_RULES; the fake capture
# must give the real capture's graph.


class _WeightNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.utils.weight_norm(nn.Conv2d(3, 4, 3))

    def forward(self, x):
        return self.conv(x)


class _Pads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        return self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect")) + self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))


class _Pool3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 3, 1)

    def forward(self, x):
        y = self.conv(x)
        return F.max_pool3d(y, 2).sum() + F.adaptive_avg_pool3d(y, 2).sum()


class _Ctc(FcModule):
    def __init__(self):
        super().__init__(4, 5)

    def forward(self, x, targets):
        log_probs = self.fc(x).log_softmax(2)  # [T, N, C]
        return F.ctc_loss(log_probs, targets, [6, 6], [2, 3], reduction="sum")


class _GridSample(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.theta = nn.Parameter(torch.tensor([[[0.9, 0.1, 0.0], [0.0, 1.1, 0.1]]]).repeat(2, 1, 1))

    def forward(self, x):
        grid = F.affine_grid(self.theta, [2, 3, 6, 6], align_corners=False)
        return F.grid_sample(self.conv(x), grid, align_corners=False)


class _Bags(nn.Module):
    def __init__(self):
        super().__init__()
        self.sum = nn.EmbeddingBag(20, 4, mode="sum")
        self.mean = nn.EmbeddingBag(20, 4, mode="mean", include_last_offset=True)
        self.max = nn.EmbeddingBag(20, 4, mode="max", padding_idx=0)

    def forward(self, ids, offsets):
        return self.sum(ids, offsets[:-1]) + self.mean(ids, offsets) + self.max(ids, offsets[:-1])


class _FrozenBatchNorm(nn.Sequential):
    """Its BatchNorm stays in evaluation mode while the model trains."""

    def __init__(self):
        super().__init__(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))

    def train(self, mode=True):
        super().train(mode)
        self[1].eval()
        return self


class _Bf16Norms(nn.Module):
    """Layer, batch and group norm in bfloat16 (torch 1.13's CPU kernels keep
    their statistics in bf16, its meta kernels say float)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(),
                                  nn.LayerNorm(4 * 4 * 4), nn.Linear(64, 3)).to(torch.bfloat16)

    def forward(self, x):
        return self.body(x.to(torch.bfloat16)).float()


def _small_swin():
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 1], num_heads=[2, 2], window_size=[3, 3],
                           stochastic_depth_prob=0.0, num_classes=5)


def _smooth_losses(out, x, y):
    return F.smooth_l1_loss(out, y) + F.huber_loss(out, y, delta=0.5)


META_CASES = {
    # aten._adaptive_avg_pool2d_backward (alexnet, vgg, googlenet)
    "adaptive_avg_pool2d": lambda: (nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(3), nn.Flatten()),
                                    (torch.randn(2, 3, 8, 8),), weighted_sum, None),
    # aten.nll_loss2d_forward / backward (fcn, deeplabv3)
    "nll_loss2d": lambda: (nn.Conv2d(3, 4, 1), (torch.randn(2, 3, 5, 5), torch.randint(0, 4, (2, 5, 5))),
                           cross_entropy, 1),
    # aten._weight_norm_interface / _backward
    "weight_norm": lambda: (_WeightNorm(), (torch.randn(2, 3, 6, 6),), weighted_sum, None),
    # aten.reflection_pad2d_backward, aten.replication_pad2d_backward
    "pads": lambda: (_Pads(), (torch.randn(2, 3, 6, 6),), weighted_sum, None),
    # aten.max_pool3d_with_indices / _backward, aten._adaptive_avg_pool3d_backward
    "pool3d": lambda: (_Pool3d(), (torch.randn(2, 2, 4, 6, 6),), None, None),
    # aten._ctc_loss / _ctc_loss_backward
    "ctc": lambda: (_Ctc(), (torch.randn(6, 2, 4), torch.tensor([[1, 2, 0], [1, 3, 4]])), None, None),
    # aten.grid_sampler_2d_backward
    "grid_sample": lambda: (_GridSample(), (torch.randn(2, 3, 6, 6),), weighted_sum, None),
    # in-place metadata ops (as_strided_ in swin's shifted windows): each
    # value keeps the shape it had when it was computed
    "swin": lambda: (_small_swin(), (torch.randn(2, 3, 24, 24), torch.randint(0, 5, (2,))), cross_entropy, 1),
    # real-kernel shapes (fake_trace._REAL_SHAPES): _embedding_bag's bookkeeping tensors on the
    # CPU, and a BatchNorm in evaluation mode inside a training step saving no statistics
    "embedding_bags": lambda: (_Bags(), (torch.randint(0, 20, (12,)), torch.tensor([0, 3, 5, 9, 12])), None, None),
    "frozen_batchnorm": lambda: (_FrozenBatchNorm(), (torch.randn(2, 3, 6, 6),), weighted_sum, None),
    # and the statistics' dtype of reduced-precision normalizations on the CPU
    "bf16_norms": lambda: (_Bf16Norms(), (torch.randn(2, 3, 6, 6),), weighted_sum, None),
    # aten.smooth_l1_loss_backward, aten.huber_loss_backward
    "smooth_losses": lambda: (nn.Linear(4, 3), (torch.randn(5, 4), torch.randn(5, 3)), _smooth_losses, 1),
}


@pytest.mark.parametrize("case", sorted(META_CASES))
def test_meta_rules_give_the_real_graph(case, memfit_cli, tmp_path):
    torch.manual_seed(0)
    model, inputs, loss_fn, k = META_CASES[case]()
    model.train()
    kwargs = dict(loss_fn=loss_fn, name=case, num_module_inputs=k)
    real = memfit.capture(model, inputs, **kwargs)
    fake = memfit.capture(model, inputs, fake=True, **kwargs)
    assert structure(fake.graph) == structure(real.graph)
    validate(memfit_cli, fake.graph, tmp_path)


def test_every_meta_rule_is_needed_and_tested():
    """The rules cover ops torch's meta device lacks (else the rule is dead
    code); the cases above reach the ones torchvision and the corpus use."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    assert len(fake_trace._META_RULES) >= 15
    for op in (torch.ops.aten._adaptive_avg_pool2d_backward.default, torch.ops.aten.nll_loss2d_forward.default,
               torch.ops.aten._weight_norm_interface.default, torch.ops.aten.reflection_pad2d_backward.default,
               torch.ops.aten.max_pool3d_with_indices.default):
        assert op in fake_trace._META_RULES
    # The rule is used only when torch's own meta kernel fails: with one (torch 2.x) it is never reached.
    with FakeTensorMode():
        x = torch.empty(2, 3, 4, 4)
        assert torch.ops.aten._adaptive_avg_pool2d.default(x, [2, 2]).shape == (2, 3, 2, 2)


def test_value_reads_are_a_clear_error_with_fake_tensors():
    class ReadsValue(FcModule):
        def forward(self, x):
            n = int(x.abs().argmax().item()) % 3 + 1
            return self.fc(x)[:n].sum() + sum(x[0].tolist())

    with pytest.raises(memfit.Error, match=r"reads a tensor's value.*fake=False"):
        memfit.capture(ReadsValue(), (torch.randn(3, 4),), fake=True)


def test_embedding_bag_dense_backward_rule():
    """(A whole EmbeddingBag capture differs under fake tensors for another
    reason: torch 1.13's meta _embedding_bag gives max_indices another size
    than the CPU kernel.) The rule's shape is the real op's."""
    weight, ids, offsets = torch.randn(10, 4), torch.tensor([1, 2, 4, 5, 4, 3]), torch.tensor([0, 2, 5])
    out, offset2bag, bag_size, max_indices = torch.ops.aten._embedding_bag(weight, ids, offsets, False, 1)
    args = (torch.ones_like(out), ids, offset2bag, bag_size, max_indices, 10, False, 1, None, -1)
    real = torch.ops.aten._embedding_bag_dense_backward(*args)
    mode = fake_trace.fake_mode()
    fake_args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
    with mode:
        fake = torch.ops.aten._embedding_bag_dense_backward(*fake_args)
    assert fake.shape == real.shape == (10, 4) and fake.dtype == real.dtype
