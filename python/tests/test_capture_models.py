"""Captured torchvision architectures and indexing ops: capture -> memfit
validate (the C++ registry re-infers every op's shapes) -> memfit.run ->
gradients and updated parameters equal to eager.

Small configurations of swin (v1, v2) and MaxViT keep the suite fast; the
full-size constructors are in python/bench/capture_coverage.py.
"""

import subprocess

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.verify import relative_error

RTOL = 1e-5


def opaque_ops(g, memfit_cli):
    known = set(subprocess.run([memfit_cli, "ops"], capture_output=True, text=True, check=True).stdout.split())
    return sorted({op.type for op in g.ops} - known)


def check(cap, memfit_cli, tmp_path, allow_opaque=()):
    """Validates, runs and compares a capture with eager; returns memfit.run's outputs."""
    g = cap.graph
    path = tmp_path / f"{g.name}.json"
    memfit.save(g, path)
    v = subprocess.run([memfit_cli, "validate", str(path)], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("ok"), v.stdout + v.stderr
    assert set(opaque_ops(g, memfit_cli)) <= set(allow_opaque)
    inputs = {k: v.clone() for k, v in cap.inputs.items()}
    out = memfit.run(memfit.load(path), inputs)
    assert relative_error(out[g.tensors[g.outputs[0]].name], cap.loss) <= RTOL
    if cap.updated:
        for k, want in cap.updated.items():
            assert relative_error(inputs[k], want) <= RTOL, k
    else:
        scale = max(w.abs().max().item() for w in cap.grads.values())
        for k, want in cap.grads.items():
            assert (out[k] - want).abs().max().item() <= RTOL * scale, k
    return out


def ce(out, x, y):
    return F.cross_entropy(out, y)


@pytest.mark.parametrize("v2", [False, True])
def test_small_swin(v2, memfit_cli, tmp_path):
    """Swin's shifted windows: roll, constant_pad_nd, the relative position
    bias (index; its backward index_put with accumulate), the attention mask
    (fill_ / masked_fill_); v2 adds norm, clamp and clamp_min."""
    from torchvision.models.swin_transformer import SwinTransformer, SwinTransformerBlockV2, PatchMergingV2

    torch.manual_seed(0)
    kwargs = dict(block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2) if v2 else {}
    model = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 1], num_heads=[2, 2], window_size=[3, 3],
                            stochastic_depth_prob=0.0, num_classes=5, **kwargs).train()
    x, y = torch.randn(2, 3, 24, 24), torch.randint(0, 5, (2,))
    cap = memfit.capture(model, (x, y), loss_fn=ce, num_module_inputs=1, name="swin_v2" if v2 else "swin",
                         optimizer="sgd-momentum")
    types = {op.type for op in cap.graph.ops}
    assert {"aten.roll", "aten.index", "aten.constant_pad_nd"} <= types
    assert types & {"aten.index_put", "aten.index_put_", "aten._index_put_impl_"}
    check(cap, memfit_cli, tmp_path)


def test_small_maxvit(memfit_cli, tmp_path):
    from torchvision.models.maxvit import MaxVit

    torch.manual_seed(0)
    model = MaxVit(input_size=(16, 16), stem_channels=8, partition_size=2, block_channels=[8, 16],
                   block_layers=[1, 1], head_dim=4, stochastic_depth_prob=0.0, num_classes=5).train()
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 5, (2,))
    cap = memfit.capture(model, (x, y), loss_fn=ce, num_module_inputs=1, name="maxvit")
    check(cap, memfit_cli, tmp_path)


def test_mobilenet_v3_and_segmentation_ops(memfit_cli, tmp_path):
    """hardswish_ / hardsigmoid (SE blocks), bilinear upsampling and the 2-d
    NLL loss of segmentation heads."""
    from torchvision.models import mobilenet_v3_small

    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = mobilenet_v3_small(num_classes=4).features[:4]
            self.head = nn.Conv2d(24, 3, 1)

        def forward(self, x):
            y = self.head(self.backbone(x))
            return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    cap = memfit.capture(Seg().train(), (x, y), loss_fn=ce, num_module_inputs=1, name="seg")
    types = {op.type for op in cap.graph.ops}
    assert {"aten.hardswish_", "aten.hardsigmoid", "aten.upsample_bilinear2d", "aten.nll_loss2d_forward",
            "aten.nll_loss2d_backward"} <= types
    check(cap, memfit_cli, tmp_path)


class Indexing(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x, idx):
        y = self.lin(x)
        cols = y[:, idx]  # aten.index(y, [None, idx])
        w = y.clone()
        w[idx] = y[:3] * 2  # index_put_
        rows = y[idx, 1:4]
        return (cols.sum(0) * w[:3].sum(1, keepdim=True)).sum() + rows.pow(2).sum() + torch.roll(y, 1, 0)[0].sum()


def test_indexing_with_none_entries_and_index_put(memfit_cli, tmp_path):
    torch.manual_seed(0)
    x, idx = torch.randn(5, 8), torch.tensor([0, 2, 4])
    cap = memfit.capture(Indexing(), (x, idx), name="indexing")
    index_ops = [op for op in cap.graph.ops if op.type == "aten.index"]
    assert any(op.attrs.get("indices") == [0, 1] for op in index_ops)
    check(cap, memfit_cli, tmp_path)


def test_index_put_binding():
    """index_put(self, indices: Tensor?[], values): values is the last input,
    not part of the index list."""
    g = memfit.Graph(name="g")
    x = memfit.Tensor(id=0, name="x", shape=[4, 3], dtype="f32", role="input")
    i = memfit.Tensor(id=1, name="i", shape=[2], dtype="i64", role="input")
    v = memfit.Tensor(id=2, name="v", shape=[4, 2], dtype="f32", role="input")
    y = memfit.Tensor(id=3, name="y", shape=[4, 3], dtype="f32", role="output", producer=0)
    g.tensors = [x, i, v, y]
    g.ops = [memfit.Op(id=0, name="put", type="aten.index_put", inputs=[0, 1, 2], outputs=[3],
                       attrs={"indices": [0, 1], "accumulate": True})]
    g.outputs = [3]
    xs, vs = torch.randn(4, 3), torch.randn(4, 2)
    out = memfit.run(g, {"x": xs, "i": torch.tensor([0, 2]), "v": vs})
    want = xs.clone()
    want[:, [0, 2]] += vs
    assert torch.equal(out["y"], want)
    g.ops[0].attrs["indices"] = [1, 1]
    with pytest.raises(memfit.Error, match="attribute 'indices' must be a 0/1 list with one 1 per tensor"):
        memfit.run(g, {"x": xs, "i": torch.tensor([0, 2]), "v": vs})


class _WindowsAndStatistics(nn.Module):
    """Ops the registry did not know (opaque: barriers to fission, no cost):
    a SegNet decoder's max_unpool2d, an adaptive max pool (fastai's concat
    pooling), patches by Tensor.unfold, Barlow Twins' diagonal of a
    cross-correlation next to an eye, var_mean / std_mean, all / any, running
    extrema and logcumsumexp, mode, nanmedian, and element-wise math."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)
        self.head = nn.Linear(6 * 4 + 6 * 4 + 6 + 8 + 8, 5)

    def forward(self, x):
        h = F.celu(self.conv(x))
        p, idx = self.pool(h)
        h = F.hardshrink(self.unpool(p, idx, output_size=h.shape), 0.1) + F.softshrink(h, 0.2) + F.threshold(h, 0.3, -1)
        a = F.adaptive_max_pool2d(h, 2).flatten(1)
        patches = h.unfold(2, 4, 4).unfold(3, 4, 4)  # [B, 6, 2, 2, 4, 4]
        var, mean = torch.var_mean(patches.flatten(4), -1)
        std, _ = torch.std_mean(patches.flatten(2), -1)
        z = a[:, :8]
        c = (z - z.mean(0)).t() @ (z - z.mean(0)) / z.shape[0]
        off = (c * (1 - torch.eye(8))).pow(2).sum() + (torch.diagonal(c) - 1).pow(2).sum()
        runs = torch.cummax(z, 1)[0] + torch.cummin(z, 1)[0] + torch.logcumsumexp(z, 1)
        picked = torch.mode(z.round(), 1)[0] + torch.nanmedian(z, 1)[0]
        gate = (z > -5).all(1, keepdim=True).float() + (z > 5).any(1, keepdim=True).float()
        math = torch.logaddexp(z, runs) + torch.hypot(z, 1 + runs) + torch.lerp(z, runs, 0.3) + torch.fmin(z, runs)
        math = math + torch.nan_to_num(torch.lgamma(2 + z.abs()) + torch.digamma(2 + z.abs())) + torch.sinc(z)
        math = torch.addcdiv(math, z, 2 + runs.abs(), value=0.5) + torch.erfinv(torch.tanh(z) * 0.9)
        feats = torch.cat([a, var.flatten(1), std, math * gate, picked[:, None].expand(-1, 8)], 1)
        return self.head(feats) + off + mean.mean()


def test_windows_pooling_and_statistics_ops_are_known_and_run_equal(memfit_cli, tmp_path):
    torch.manual_seed(0)
    model = _WindowsAndStatistics()
    x, y = torch.randn(3, 3, 8, 8), torch.randint(0, 5, (3,))
    cap = memfit.capture(model, (x, y), loss_fn=ce, num_module_inputs=1, name="windows")
    types = {op.type for op in cap.graph.ops}
    assert {"aten.max_unpool2d", "aten.adaptive_max_pool2d", "aten.unfold", "aten.unfold_backward",
            "aten.diagonal", "aten.eye", "aten.var_mean", "aten.cummax", "aten.logcumsumexp", "aten.mode"} <= types
    check(cap, memfit_cli, tmp_path)  # no opaque op left, shapes re-inferred by `memfit validate`
