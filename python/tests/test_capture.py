"""memfit.capture: PyTorch training steps as memfit graphs.

Each model is captured with make_fx (forward + loss + autograd.grad), written
as JSON, validated by the C++ CLI (`memfit validate` re-infers every
registered op's shapes, so a disagreement between the registry and PyTorch
fails here), run with memfit.run and compared with eager PyTorch.
"""

import subprocess

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.verify import relative_error
from memfit.examples import TinyBert

RTOL = 1e-5


def check_capture(cap, memfit_cli, tmp_path):
    g = cap.graph
    path = tmp_path / f"{g.name}.json"
    memfit.save(g, path)
    v = subprocess.run([memfit_cli, "validate", str(path)], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("ok"), v.stdout + v.stderr
    # Roles and phases.
    params = [t for t in g.tensors if t.role == "parameter" and t.alias_of is None and t.producer is None]
    assert params
    assert {op.phase for op in g.ops} == {"forward", "backward"}
    first_backward = next(i for i, op in enumerate(g.ops) if op.phase == "backward")
    assert all(op.phase == "backward" for op in g.ops[first_backward:])
    names = {g.tensors[t].name for t in g.outputs}
    assert {p.name + ".grad" for p in params} <= names
    # Run it and compare with eager.
    out = memfit.run(memfit.load(path), cap.inputs)
    loss = out[g.tensors[g.outputs[0]].name]
    assert relative_error(loss, cap.loss) <= RTOL
    worst = max(relative_error(out[k], ref) for k, ref in cap.grads.items())
    print(f"\n{g.name}: {len(g.ops)} ops, {len(g.tensors)} tensors, captured in {cap.seconds:.2f} s, "
          f"max relative gradient error {worst:.3e}")
    assert worst <= RTOL
    return out


def test_mlp(memfit_cli, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
    cap = memfit.capture(model, (x, y), loss_fn=lambda out, x, y: F.cross_entropy(out, y), name="mlp",
                         num_module_inputs=1)
    g = cap.graph
    assert {t.role for t in g.tensors if t.producer is None} == {"parameter", "input"}
    types = {op.type for op in g.ops}
    assert {"aten.addmm", "aten.relu", "aten._log_softmax", "aten.nll_loss_forward", "aten.threshold_backward",
            "aten.mm"} <= types
    views = [t for t in g.tensors if t.producer is not None and g.ops[t.producer].type == "aten.t"]
    assert views and all(t.alias_of is not None for t in views)
    check_capture(cap, memfit_cli, tmp_path)


def test_torchvision_resnet18(memfit_cli, tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).train()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    cap = memfit.capture(model, (x, y), loss_fn=lambda out, x, y: F.cross_entropy(out, y), name="resnet18",
                         num_module_inputs=1)
    g = cap.graph
    assert any(op.type == "aten.convolution_backward" for op in g.ops)
    assert any(t.role == "buffer" and t.name.endswith("running_var") for t in g.tensors)
    check_capture(cap, memfit_cli, tmp_path)


def weighted_sum(out, *inputs):
    # A loss whose gradient is not trivial (out.sum() after LayerNorm is ~0).
    w = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    return (out * w).sum()


def test_transformer_encoder_layer(memfit_cli, tmp_path):
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True).train()
    cap = memfit.capture(model, (torch.randn(2, 8, 32),), loss_fn=weighted_sum, name="transformer_layer")
    assert any(op.type in ("aten._softmax", "aten.native_layer_norm") for op in cap.graph.ops)
    check_capture(cap, memfit_cli, tmp_path)


def test_bert_style_encoder(memfit_cli, tmp_path):
    torch.manual_seed(0)
    model = TinyBert().train()
    ids, labels = torch.randint(0, 50, (2, 16)), torch.randint(0, 3, (2,))
    cap = memfit.capture(model, (ids, labels), loss_fn=lambda out, ids, y: F.cross_entropy(out, y), name="tiny_bert",
                         num_module_inputs=1)
    g = cap.graph
    assert any(op.type == "aten.embedding_dense_backward" for op in g.ops)
    assert g.tensor_by_name("input0").dtype == "i64"
    check_capture(cap, memfit_cli, tmp_path)


def test_dropout_and_batchnorm(memfit_cli, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.25),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 5)).train()
    cap = memfit.capture(model, (torch.randn(4, 3, 8, 8),), loss_fn=weighted_sum, name="conv_bn_dropout")
    g = cap.graph
    assert any(op.type == "aten.native_batch_norm_backward" for op in g.ops)
    # Running statistics are buffers updated in place during the step.
    check_capture(cap, memfit_cli, tmp_path)
    assert any(t.role == "buffer" for t in g.tensors)


def test_cli_writes_a_valid_graph(memfit_cli, tmp_path):
    path = tmp_path / "mlp.json"
    r = subprocess.run(["/usr/bin/python3", "-m", "memfit.capture", "mlp", "--image", "8", "-o", str(path), "--check"],
                       capture_output=True, text=True, env={**__import__("os").environ,
                                                           "PYTHONPATH": str(memfit.__file__.rsplit("/", 2)[0])})
    assert r.returncode == 0, r.stderr
    assert "max relative gradient error" in r.stdout
    v = subprocess.run([memfit_cli, "validate", str(path)], capture_output=True, text=True)
    assert v.stdout.startswith("ok"), v.stdout + v.stderr


PYTHON_FLOATS = {
    "f64 tensor * 0.1": (torch.float64, lambda h: h * 0.1),
    "f64 tensor / 0.7 in place": (torch.float64, lambda h: h.clone().div_(0.7)),
    "f16 tensor + 0.3": (torch.float16, lambda h: (h + 0.3).float()),
    "0-dim f32 * 0.1": (torch.float32, lambda h: h.mean() * 0.1 + h),
    "int tensor * 0.5": (torch.float32, lambda h: h * (torch.arange(4) * 0.5)),
}


@pytest.mark.parametrize("case", sorted(PYTHON_FLOATS))
def test_python_float_operand_is_wrapped_as_torch_does(case, memfit_cli, tmp_path):
    # A Python float an op takes as a tensor computes in the dtype of its floating-point
    # tensor operand (float32 next to integers only): the graph's scalar has that dtype,
    # so float64 steps equal eager exactly (was float32: ~1e-8 off) and the dtypes validate.
    dtype, f = PYTHON_FLOATS[case]

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            return f(self.a(x).to(dtype)).float().sum()

    torch.manual_seed(0)
    m = M().to(torch.float64 if dtype == torch.float64 else torch.float32)
    x = torch.randn(3, 4, dtype=next(m.parameters()).dtype)
    cap = memfit.capture(m, (x,))
    check_equal_and_valid(cap, memfit_cli, tmp_path)


def check_equal_and_valid(cap, memfit_cli, tmp_path):
    """memfit.run of the capture gives eager's loss and gradients exactly; memfit validate passes."""
    out = memfit.run(cap.graph, {k: v.clone() for k, v in cap.inputs.items()})
    assert torch.equal(out[cap.graph.tensors[cap.graph.outputs[0]].name], cap.loss)
    for k, want in cap.grads.items():
        assert torch.equal(out[k], want), k
    path = tmp_path / "g.json"
    memfit.save(cap.graph, path)
    v = subprocess.run([memfit_cli, "validate", str(path)], capture_output=True, text=True)
    assert v.stdout.startswith("ok"), v.stdout + v.stderr


class _MBConv(nn.Module):
    """EfficientNet's MBConv block (torchvision's layers, small): 1x1 expansion, BatchNorm,
    in-place SiLU, depthwise 3x3, squeeze-and-excitation (SiLU, sigmoid), 1x1 projection,
    BatchNorm, a residual; then Mish and a linear head."""

    def __init__(self, c=8, e=4):
        super().__init__()
        from torchvision.ops import SqueezeExcitation

        self.block = nn.Sequential(
            nn.Conv2d(c, c * e, 1, bias=False), nn.BatchNorm2d(c * e), nn.SiLU(inplace=True),
            nn.Conv2d(c * e, c * e, 3, padding=1, groups=c * e, bias=False), nn.BatchNorm2d(c * e),
            nn.SiLU(inplace=True), SqueezeExcitation(c * e, c // 2, activation=nn.SiLU),
            nn.Conv2d(c * e, c, 1, bias=False), nn.BatchNorm2d(c))
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        y = F.mish(x + self.block(x))
        return self.head(F.silu(y).mean((2, 3)))


@pytest.mark.parametrize("fake", [False, True])
def test_silu_and_mish_backward_are_eager_kernels(fake, memfit_cli, tmp_path):
    # make_fx decomposes every op with a CompositeImplicitAutograd kernel, also
    # aten.silu_backward and aten.mish_backward, which eager runs as their fused CPU
    # kernels: the decomposition rounds differently, and EfficientNets' gradients
    # differed from eager's by ~1e-6. They are recorded as themselves now: equal.
    torch.manual_seed(0)
    m = _MBConv().train()
    x, y = torch.randn(2, 8, 6, 6), torch.randint(0, 3, (2,))
    decompose = torch._ops.OpOverload.decompose
    cap = memfit.capture(m, (x, y), loss_fn=lambda out, x, y: F.cross_entropy(out, y), num_module_inputs=1,
                         fake=fake)
    types = [op.type for op in cap.graph.ops]
    assert types.count("aten.silu_backward") == 4 and types.count("aten.mish_backward") == 1
    assert "aten.sigmoid_backward" in types  # SE's sigmoid: its own backward op
    assert torch._ops.OpOverload.decompose is decompose  # torch's, put back after tracing
    if not fake:
        assert len(cap.grads) == 15
        check_equal_and_valid(cap, memfit_cli, tmp_path)
