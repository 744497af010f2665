"""ONNX files written by PyTorch's own exporter, imported by `memfit import`.

Each module is exported with torch.onnx.export (opsets 11 and 17, static
shapes, constant folding) and imported twice: the forward graph runs in
float64 with the file's initializers and must equal the module's output; the
training graph (`--train --no-update`) must give autograd's gradients
(memfit.verify.check_gradients).
"""

import subprocess
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.verify import check_gradients

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402


class Ops(nn.Module):
    """The ops exporters write for CNN decoders and mobile nets, one branch per kind."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        k, y = self.kind, self.c1(x)
        if k == "activations":
            y = F.relu6(y) + F.hardswish(y) + F.hardsigmoid(y) + F.leaky_relu(y, 0.2) + F.gelu(y) + y.clamp(-0.5, 0.7)
        elif k == "arithmetic":
            y = torch.sqrt(y * y + 1.0) + y.pow(3) * 0.1 + torch.exp(-y * y) + torch.log(y * y + 2.0)
        elif k == "instance_norm":
            y = self.inorm(y)
        elif k == "resize":
            p = F.max_pool2d(y, 2)
            y = F.interpolate(p, scale_factor=2, mode="nearest") + F.interpolate(p, scale_factor=2, mode="bilinear")
        elif k == "shuffle_pad_slice":
            y = F.pixel_shuffle(torch.cat([y, y * 2, y, -y], 1), 2)[:, :, 1::2, ::2]
            y = F.pad(y, (1, 2, 0, 1))[:, :, 1:-2, :-1]
        elif k == "squeeze_excite":
            y = y * y.mean((2, 3), keepdim=True).sigmoid()
        elif k == "trig_abs_elu":
            y = torch.sin(y) * torch.cos(y) + y.abs() + F.elu(y, 0.7) + F.softplus(y) + 1.5 - y + 2.0 / (y * y + 1.0)
        elif k == "max_min_where":
            y = torch.maximum(y, y.mean(1, keepdim=True)) + torch.minimum(y, -y) + y.clamp(min=0.1) + y.clamp(max=0.2)
            y = y.masked_fill(y > 0.5, -1.0) + torch.where(y < 0, y, y * 0.1) + torch.where(y >= 0.3, y, y.flip(1))
        elif k == "max_reductions":  # GlobalMaxPool, ReduceMax, ReduceMin
            y = F.adaptive_max_pool2d(y, 1) * y + y.amax(1, keepdim=True) - y.amin((2, 3), keepdim=True) + y.amax(-1).mean()
        elif k == "split_tile":
            a, b = y.split([3, 5], dim=1)
            y = torch.cat([b * torch.sigmoid(a).repeat(1, 2, 1, 1)[:, :5], a], 1)
            p, q = y.chunk(2, dim=1)
            y = torch.cat([q, p * 2], 1)
        y = self.c2(y).mean((2, 3)).unsqueeze(1).squeeze(1)
        return self.head(y)


class FreshBatchNorm(nn.Module):
    """A BatchNorm the exporter cannot fold into a convolution: its fresh
    running mean equals its bias (zeros), and the exporter merges them."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.conv(self.bn(x)).mean((2, 3)))


def export_and_import(memfit_cli, tmp_path, module, x, opset):
    path = tmp_path / f"m{opset}.onnx"
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, x, str(path), opset_version=opset, input_names=["x"], output_names=["y"],
                          do_constant_folding=True)
    graphs = {}
    for name, extra in (("forward", []), ("train", ["--train", "--no-update"])):
        out = tmp_path / f"{name}{opset}.json"
        r = subprocess.run([memfit_cli, "import", str(path), *extra, "-o", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        graphs[name] = memfit.load(str(out))
    model = onnx.load(str(path))
    values = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    for node in model.graph.node:  # merged initializers, and Constant nodes' tensors
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = torch.from_numpy(numpy_helper.to_array(node.attribute[0].t).copy())
    return graphs, values


def check(memfit_cli, tmp_path, module, x, opset):
    graphs, values = export_and_import(memfit_cli, tmp_path, module, x, opset)
    g = graphs["forward"]
    names = {t.name for t in g.tensors}
    inputs = {k: v for k, v in values.items() if k in names}
    inputs["x"] = x
    got = list(memfit.run(g, inputs, dtype=torch.float64).values())[0]
    with torch.no_grad():
        want = module.double()(x.double())
    module.float()
    # ONNX float attributes and constants (0.2, 1/sqrt(2), clip bounds) are float32.
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())
    # The file's masks and indices hold their own values (a random mask may hide a whole row).
    train_names = {t.name for t in graphs["train"].tensors}
    fixed = {k: v for k, v in values.items() if not v.is_floating_point() and k in train_names}
    result = check_gradients(graphs["train"], seed=0, dtype=torch.float64, fixed=fixed)
    assert not result.missing
    assert result.max_error <= 1e-9, result.worst()
    return graphs


def run_handmade(memfit_cli, tmp_path, model, inputs):
    """A hand-built ONNX model (other exporters' ops and attributes) imported by the
    CLI and its forward run in float64 on `inputs`: its one output."""
    path, out = tmp_path / "handmade.onnx", tmp_path / "handmade.json"
    onnx.save(model, str(path))
    r = subprocess.run([memfit_cli, "import", str(path), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return list(memfit.run(memfit.load(str(out)), inputs, dtype=torch.float64).values())[0]


KINDS = ["activations", "arithmetic", "instance_norm", "resize", "shuffle_pad_slice", "squeeze_excite", "trig_abs_elu",
         "max_min_where", "split_tile", "max_reductions"]


@pytest.mark.parametrize("opset", [11, 17])
@pytest.mark.parametrize("kind", KINDS)
def test_exported_ops_equal_pytorch(memfit_cli, tmp_path, kind, opset):
    """("activations", 11) caught autodiff reading a freed shape: opset 11 writes
    hardswish as x * HardSigmoid(x), and the product's gradient for the second
    factor was reduced to the shape [] (GraphBuilder::shape returned a
    reference into the tensors a later Call moved)."""
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, Ops(kind), torch.randn(2, 3, 8, 8), opset)


class Sequence1d(nn.Module):
    """A 1-d convolutional net over [N, L, C] features: 1-d pooling (MaxPool / AveragePool of
    a 3-d input), AdaptiveAvgPool1d(1) (GlobalAveragePool of a 3-d input), PReLU (PRelu) per
    channel and shared, F.normalize (ReduceL2, and Clip by a cast constant) and an L1 norm
    (ReduceL1): each was an import error."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.act = nn.PReLU(8, init=0.1)
        self.conv2 = nn.Conv1d(8, 8, 3, dilation=2, padding=2)
        self.shared = nn.PReLU(init=0.3)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = F.max_pool1d(self.act(self.bn(self.conv(x.transpose(1, 2)))), 2)
        y = F.avg_pool1d(self.shared(self.conv2(y)), 3, stride=1, padding=1) + F.max_pool1d(y, 3, 1, 1)
        y = F.adaptive_avg_pool1d(y, 1).squeeze(2)
        return self.head(F.normalize(y, dim=1) + y / torch.norm(y, p=1, dim=1, keepdim=True))


@pytest.mark.parametrize("opset", [11, 17])
def test_exported_1d_pooling_prelu_and_norms_equal_pytorch(memfit_cli, tmp_path, opset):
    torch.manual_seed(0)
    module = Sequence1d()
    module.bn.running_mean.normal_()
    module.bn.running_var.uniform_(0.5, 2.0)
    check(memfit_cli, tmp_path, module, torch.randn(2, 12, 4), opset)


class Recurrent(nn.Module):
    """nn.LSTM / nn.GRU / nn.RNN as torch exports them: one LSTM, GRU or RNN node per layer
    and direction pair, unrolled by the importer."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        if kind == "lstm":  # two layers, the last step's hidden state and the outputs
            self.rnn = nn.LSTM(4, 6, num_layers=2, batch_first=True)
        elif kind == "gru":
            self.rnn = nn.GRU(4, 6, bidirectional=True)
        else:
            self.rnn = nn.RNN(4, 6, nonlinearity="relu", batch_first=True, bidirectional=True)
        self.head = nn.Linear(12 if kind != "lstm" else 6, 3)

    def forward(self, x):
        if self.kind == "lstm":
            y, (h, c) = self.rnn(x)
            return self.head(y.mean(1) + h[-1] * c[0])
        if self.kind == "gru":
            y, h = self.rnn(x.transpose(0, 1))
            return self.head(y[-1] + torch.cat([h[0], h[1]], 1))
        y, _ = self.rnn(x)
        return self.head(y.amax(1))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_exported_recurrent_layers_equal_pytorch(memfit_cli, tmp_path, kind):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, Recurrent(kind), torch.randn(2, 5, 4), 13)


class MaskedScan(nn.Module):
    """A causal mask by torch.triu (Trilu, opset 14), SELU / CELU (Selu, Celu), a running
    sum (CumSum), floor and sign (zero gradients), and a standard deviation over two dims,
    whose element count torch exports as ReduceProd of the shape (folded at import)."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(6, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        s = self.q(x) @ x.transpose(1, 2)
        mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1)
        y = s.masked_fill(mask, -1e4).softmax(-1) @ x
        y = F.selu(y) + F.celu(y, 0.5) + torch.cumsum(y, 1) * 0.1 + torch.floor(y * 3) * 0.01 + torch.sign(y) * 0.1
        return self.head(y.mean(1) + y.std((1, 2))[:, None])


@pytest.mark.parametrize("opset", [14, 17])
def test_exported_causal_scan_equals_pytorch(memfit_cli, tmp_path, opset):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, MaskedScan(), torch.randn(2, 5, 6), opset)


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumsum_exclusive_and_reverse(memfit_cli, tmp_path, exclusive, reverse):
    from onnx import TensorProto, helper

    axis = helper.make_tensor("axis", TensorProto.INT64, [], [1])
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)
    graph = helper.make_graph([node], "scan", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], initializer=[axis])
    x = torch.randn(2, 4, dtype=torch.float64)
    got = run_handmade(memfit_cli, tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), {"x": x})
    want = (x.flip(1) if reverse else x).cumsum(1)
    if exclusive:
        want = want - (x.flip(1) if reverse else x)
    want = want.flip(1) if reverse else want
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)


class PadsAndProducts(nn.Module):
    """Reflect and edge padding (nn.ReflectionPad2d, F.pad(mode="replicate") of 3-d, 4-d
    and 5-d inputs), and torch.matmul with a 1-d operand or batch dims that broadcast."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.ReflectionPad2d((1, 1, 2, 0)), nn.Conv2d(3, 4, 3))
        self.w = nn.Parameter(torch.randn(6, 6) * 0.3)
        self.v = nn.Parameter(torch.randn(6))
        self.m = nn.Parameter(torch.randn(3, 1, 6, 6) * 0.3)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        y = self.conv(x)  # [2, 4, 6, 6]
        y = F.pad(y, (1, 1, 0, 0), mode="replicate")[..., 1:-1] + F.pad(y.flatten(1, 2), (2, 0), mode="reflect")[..., 2:].view_as(y)
        y = F.pad(y.unsqueeze(1), (1, 1, 0, 2, 1, 0), mode="replicate")[:, 0, 1:, :-2, 1:-1]
        z = (y @ self.v).unsqueeze(-1) * y  # [..., K] @ [K]
        z = z.mean(0) + (self.m @ z[:1]).mean(0) + (self.w @ z.mean(0)) + (self.v @ self.w)  # batch dims broadcast
        return self.head(z.mean((0, 1)) + self.w @ self.v).unsqueeze(0)  # [M, K] @ [K]


@pytest.mark.parametrize("opset", [11, 17])
def test_exported_reflect_edge_padding_and_broadcast_matmul_equal_pytorch(memfit_cli, tmp_path, opset):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, PadsAndProducts(), torch.randn(2, 3, 6, 6), opset)


class Gated(nn.Module):
    """A top-k gate over experts (TopK, GatherElements, Gather by tensor indices) and a
    log-sum-exp (ReduceLogSumExp), as a mixture of experts and a CRF export."""

    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(6, 4)
        self.experts = nn.Linear(6, 4 * 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        weights, chosen = self.gate(x).topk(2, dim=-1)
        outs = self.experts(x).view(x.shape[0], 4, 6)
        picked = outs.gather(1, chosen.unsqueeze(-1).expand(-1, -1, 6))
        y = (picked * weights.softmax(-1).unsqueeze(-1)).sum(1)
        # Gather by a tensor of indices (and by a constant list) from a tensor the step computes.
        y = y + outs.index_select(1, chosen[:, 0]).mean(1) + outs[:, [0, 3]].sum(1)
        return self.head(y) + torch.logsumexp(outs, dim=(1, 2)).unsqueeze(1)


@pytest.mark.parametrize("opset", [11, 17])
def test_exported_top_k_gate_and_logsumexp_equal_pytorch(memfit_cli, tmp_path, opset):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, Gated(), torch.randn(5, 6), opset)


def test_gather_elements_with_int32_indices(memfit_cli, tmp_path):
    """Other exporters write int32 indices; ATen's gather takes int64 (cast first)."""
    from onnx import TensorProto, helper

    node = helper.make_node("GatherElements", ["x", "i"], ["y"], axis=1)
    graph = helper.make_graph([node], "gather", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
                                                 helper.make_tensor_value_info("i", TensorProto.INT32, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    x, i = torch.randn(2, 4, dtype=torch.float64), torch.tensor([[3, 0, 0], [1, 2, 3]], dtype=torch.int32)
    got = run_handmade(memfit_cli, tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
                       {"x": x, "i": i})
    assert torch.equal(got, x.gather(1, i.long()))


class WithItsLoss(nn.Module):
    """A model that returns its loss: F.cross_entropy of [N, C] and of [N, C, L] scores
    (class weights, ignore_index, label smoothing off) and F.nll_loss, exported as
    SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss; the scalar is the loss."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.conv = nn.Conv1d(6, 4, 1)
        self.register_buffer("labels", torch.tensor([0, 3, 1, 2, 3]))
        self.register_buffer("tokens", torch.tensor([[0, 1, 2], [3, 3, 1], [2, 0, 1], [1, 2, 3], [0, 0, 2]]))
        self.register_buffer("weights", torch.tensor([1.0, 2.0, 0.5, 1.5]))

    def forward(self, x):
        seq = self.conv(x.unsqueeze(-1).expand(-1, -1, 3))  # [N, C, L]
        return (F.cross_entropy(self.fc(x), self.labels, weight=self.weights)
                + F.cross_entropy(seq, self.tokens, ignore_index=1, reduction="sum") * 0.1
                + F.nll_loss(F.log_softmax(self.fc(x) * 2, 1), self.labels))


@pytest.mark.parametrize("opset", [13, 17])
def test_exported_model_with_its_loss_trains_on_it(memfit_cli, tmp_path, opset):
    torch.manual_seed(0)
    graphs = check(memfit_cli, tmp_path, WithItsLoss(), torch.randn(5, 6), opset)
    train = graphs["train"]
    assert not any(t.name in ("loss.labels", "loss.target") for t in train.tensors)  # no loss appended to a loss
    assert sum(op.type == "aten.nll_loss_forward" for op in train.ops) == 3


@pytest.mark.parametrize("width", [3, 4])
def test_if_on_a_shape_check_is_the_branch_taken(memfit_cli, tmp_path, width):
    """torch exports shape checks (LocalResponseNorm's rank test) as If on a condition
    folded at import: the branch taken is inlined, its outputs (a value or a folded
    constant) are the If's. A condition computed from the data is one line."""
    from onnx import TensorProto, helper

    def model(data_dependent):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, width])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, width])
        inits = [helper.make_tensor("one", TensorProto.INT64, [], [1]), helper.make_tensor("three", TensorProto.INT64, [], [3])]
        nodes = [helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "one"], ["w"]),
                 helper.make_node("Equal", ["w", "three"], ["is3"])]
        if data_dependent:
            nodes += [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
                      helper.make_node("Greater", ["total", "zero"], ["is3b"])]
            inits.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
        then = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]),
                                  helper.make_node("Constant", [], ["two"], value=helper.make_tensor("v", TensorProto.FLOAT, [], [2.0])),
                                  helper.make_node("Mul", ["r", "two"], ["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
        other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                                  [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
        nodes.append(helper.make_node("If", ["is3b" if data_dependent else "is3"], ["y"], then_branch=then, else_branch=other))
        graph = helper.make_graph(nodes, "branches", [x], [y], initializer=inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])

    x = torch.randn(2, width, dtype=torch.float64)
    assert torch.equal(run_handmade(memfit_cli, tmp_path, model(False), {"x": x}), x.relu() * 2 if width == 3 else -x)
    path, out = tmp_path / "if.onnx", tmp_path / "if.json"
    onnx.save(model(True), str(path))
    r = subprocess.run([memfit_cli, "import", str(path), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "(If): the condition is computed from the data" in r.stderr, r.stderr


class Video(nn.Module):
    """3-d pooling (MaxPool3d, AvgPool3d, AdaptiveAvgPool3d(1)) and LocalResponseNorm, which
    torch exports as a rank test (If) and an AveragePool of a 5-d view."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 4, 3, padding=1)
        self.lrn = nn.LocalResponseNorm(3)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        y = F.max_pool3d(torch.relu(self.conv(x)), 2)
        y = F.avg_pool3d(self.lrn(y), (1, 2, 2), stride=1, padding=(0, 1, 1), count_include_pad=False)
        return self.head(F.adaptive_avg_pool3d(y, 1).flatten(1))  # GlobalAveragePool of a 5-d input


@pytest.mark.parametrize("opset", [13, 17])
def test_exported_3d_pooling_and_local_response_norm_equal_pytorch(memfit_cli, tmp_path, opset):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, Video(), torch.randn(2, 2, 4, 6, 6), opset)


class Scattered(nn.Module):
    """torch.scatter and scatter_add in a forward (ScatterElements, reduction none and add):
    a dispatch of tokens to slots and a sum of them back."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.head = nn.Linear(8, 3)
        self.register_buffer("slots", torch.tensor([[0, 2, 5], [1, 4, 7], [3, 6, 7], [0, 1, 2], [5, 6, 7]]))

    def forward(self, x):
        y = self.fc(x)  # [5, 3]
        placed = (x[:, :1] * 0.5).expand(-1, 8).scatter(1, self.slots, y)  # updates overwrite
        summed = y.new_zeros(5, 8).scatter_add(1, self.slots, y * y)
        return self.head(placed + summed)


@pytest.mark.parametrize("opset", [13, 16])
def test_exported_scatter_equals_pytorch(memfit_cli, tmp_path, opset):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, Scattered(), torch.randn(5, 6), opset)


@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_sum_square_and_l1_l2_of_other_exporters(memfit_cli, tmp_path, opset):
    """ReduceSumSquare, ReduceL1 and ReduceL2 as other exporters write them (axes an
    attribute before opset 18, an input from it on), against numpy."""
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes, inits = [], []
    for i, op in enumerate(["ReduceSumSquare", "ReduceL1", "ReduceL2"]):
        inputs = ["x", "axes"] if opset >= 18 else ["x"]
        kw = {} if opset >= 18 else {"axes": [1]}
        nodes.append(helper.make_node(op, inputs, [f"r{i}"], keepdims=1, **kw))
    nodes.append(helper.make_node("Concat", ["r0", "r1", "r2"], ["y"], axis=1))
    graph = helper.make_graph(nodes, "reduce", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3])],
                              initializer=[axes] if opset >= 18 else [])
    x = torch.randn(3, 5, dtype=torch.float64)
    got = run_handmade(memfit_cli, tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]),
                       {"x": x})
    want = torch.stack([x.pow(2).sum(1), x.abs().sum(1), x.pow(2).sum(1).sqrt()], 1)
    assert torch.allclose(got, want, rtol=1e-12, atol=0)


def test_merged_running_statistics_get_their_own_buffers(memfit_cli, tmp_path):
    torch.manual_seed(0)
    graphs = check(memfit_cli, tmp_path, FreshBatchNorm(), torch.randn(2, 3, 6, 6), 17)
    roles = {t.name: t.role for t in graphs["train"].tensors}
    assert roles["bn.bias"] == "parameter" and "bn.bias.grad" in roles
    assert roles["bn.running_mean"] == "buffer"


class Einsums(nn.Module):
    """torch.einsum as attention, projections and reductions write it (exported as Einsum)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6) * 0.3)
        self.v = nn.Parameter(torch.randn(6) * 0.3)
        self.u = nn.Parameter(torch.randn(3, 6) * 0.3)

    def forward(self, x):  # x [2, 4, 5, 8]: batch, heads, tokens, features
        q = torch.einsum("bhtd,de->bhte", x, self.w)  # a projection
        s = torch.einsum("bhie,bhje->bhij", q, q).softmax(-1)  # scores
        c = torch.einsum("bhij,bhje->bhie", s, q)  # context
        c = c + torch.einsum("...e,e->...", c, self.v).unsqueeze(-1)  # ellipsis, a contraction to a vector
        o = torch.einsum("bhte,ke,e->bkt", c, self.u, self.v)  # three operands, heads summed out
        return torch.einsum("bkt->bk", o) + torch.einsum("bhte->bh", c).mean(1, keepdim=True)  # sums


class Departition(nn.Module):
    """maxvit's grid attention in small: a MatMul's result (viewed back from
    its mm) read both permuted and as it is. Its gradient sums a permuted
    gradient with another; TensorIterator lays the sum out permuted, and the
    view's backward failed to view it ("view size is not compatible"): it is
    copied first now."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(5, 5) * 0.3)
        self.v = nn.Parameter(torch.randn(5, 5) * 0.3)

    def forward(self, x):  # x [2, 3, 4, 5]
        y = x @ self.w  # MatMul N-D by 2-D: viewed around mm
        t = (y.permute(0, 2, 1, 3) @ self.v).permute(0, 2, 1, 3)
        return (y + t).sum((1, 2))  # y's gradient: its own plus t's, permuted back


def test_gradient_of_a_view_read_permuted_and_whole(memfit_cli, tmp_path):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, Departition(), torch.randn(2, 3, 4, 5), 17)


def test_exported_einsums_equal_pytorch(memfit_cli, tmp_path):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, Einsums(), torch.randn(2, 4, 5, 8), 17)


def test_torchvision_mobilenet_v3_imports_and_trains(memfit_cli, tmp_path):
    """HardSwish, HardSigmoid, squeeze-and-excitation, folded BatchNorm."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, torchvision.models.mobilenet_v3_small(), torch.randn(2, 3, 32, 32), 17)


class CausalBlock(nn.Module):
    """A GPT block as nanoGPT writes it: fused QKV split (Split), a causal mask
    buffer sliced and compared (Slice, Equal, Cast) filling -inf (Where),
    learned positions of arange(T)."""

    def __init__(self, d=16, heads=4, t=6):
        super().__init__()
        self.heads = heads
        self.pos = nn.Embedding(t, d)
        self.ln = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)
        self.register_buffer("mask", torch.tril(torch.ones(t, t)).view(1, 1, t, t))

    def forward(self, x):  # x [B, T, d]
        b, t, d = x.shape
        x = x + self.pos(torch.arange(0, t, dtype=torch.long))
        q, k, v = self.qkv(self.ln(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / (d // self.heads) ** 0.5)
        att = att.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, d)
        return self.head((x + self.proj(y)).mean(1))


@pytest.mark.parametrize("opset", [13, 17])
def test_exported_causal_attention_equals_pytorch(memfit_cli, tmp_path, opset):
    torch.manual_seed(0)
    check(memfit_cli, tmp_path, CausalBlock(), torch.randn(2, 6, 16), opset)


# torchvision's Swin (a small configuration): the shifted-window mask is
# zeros (ConstantOfShape of a float: aten.full) with each window's number
# written in (ScatterND: aten.index_put) at an index grid that the importer
# folds (arange(h)[:, None] + arange(w): integer folding broadcasts), and
# that grid keeps its values in the graph (Tensor::values); the attention's
# query is scaled while laid out as the permute left it, so viewing it copies
# first. The forward equals the module, the gradients autograd's.
def test_exported_swin_equals_pytorch(memfit_cli, tmp_path):
    from torchvision.models.swin_transformer import SwinTransformer

    torch.manual_seed(0)
    model = SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=[4, 4],
                            num_classes=5)
    graphs = check(memfit_cli, tmp_path, model, torch.randn(2, 3, 32, 32), 17)
    forward = graphs["forward"]
    types = {o.type for o in forward.ops}
    assert {"aten.full", "aten.index_put"} <= types, types
    assert any(t.values for t in forward.tensors)


class WrittenRows(nn.Module):
    """Rows of a zeros mask written from a parameter (ScatterND with updates
    that need a gradient: exported in eval mode, torch folds `rows * 2` into
    an initializer, which memfit makes a parameter)."""

    def __init__(self):
        super().__init__()
        self.rows = nn.Parameter(torch.randn(2, 4))
        self.head = nn.Linear(4, 3)

    def forward(self, x):  # x [B, 4, 4]
        mask = torch.zeros(4, 4)
        mask[1:3] = self.rows * 2
        return self.head((x * mask).mean(1))


def test_exported_indexed_assignment_trains_like_pytorch(memfit_cli, tmp_path):
    torch.manual_seed(0)
    graphs = check(memfit_cli, tmp_path, WrittenRows(), torch.randn(2, 4, 4), 13)
    assert "aten.index_put" in {o.type for o in graphs["train"].ops}


def _lrn_reference(x, size, alpha, beta, bias):
    """ONNX's LRN as its specification writes it: each channel's squares summed over
    c - floor((size - 1) / 2) .. c + ceil((size - 1) / 2), the channels that exist."""
    channels = x.shape[1]
    square_sum = torch.zeros_like(x)
    for c in range(channels):
        lo, hi = max(0, c - (size - 1) // 2), min(channels - 1, c + (size - 1 + 1) // 2)
        square_sum[:, c] = (x[:, lo:hi + 1] ** 2).sum(1)
    return x / (bias + alpha / size * square_sum) ** beta


def _f32(value):
    return float(torch.tensor(value, dtype=torch.float32))


# Caffe-era models of the ONNX model zoo (AlexNet, GoogLeNet, CaffeNet, ZFNet)
# normalize with LRN, which torch exports as its arithmetic but other converters
# write as the op: "unsupported ONNX ops: LRN" before. An even size puts the
# extra channel after c (torch's local_response_norm puts it before).
@pytest.mark.parametrize("size", [3, 4, 5])
@pytest.mark.parametrize("shape", [[2, 7, 3, 3], [2, 6, 5]])
def test_lrn_equals_its_specification(memfit_cli, tmp_path, size, shape):
    from onnx import TensorProto, helper

    alpha, beta, bias = _f32(2e-3), 0.75, 1.5  # attributes are float32
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=bias)
    graph = helper.make_graph([node], "lrn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    x = torch.randn(*shape, dtype=torch.float64) * 3
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    got = run_handmade(memfit_cli, tmp_path, model, {"x": x})
    assert torch.allclose(got, _lrn_reference(x, size, alpha, beta, bias), rtol=1e-12, atol=1e-12)


def test_a_caffe_style_block_trains_with_gradients_equal_to_autograd(memfit_cli, tmp_path):
    """Conv -> Relu -> LRN -> MaxPool -> Sum / Mean of two branches -> Softsign and Mish ->
    ArgMax beside the output; imported with --train, its gradients equal autograd's."""
    from onnx import TensorProto, helper, numpy_helper

    g = torch.Generator().manual_seed(0)
    w = numpy_helper.from_array(torch.randn(6, 3, 3, 3, generator=g).numpy() * 0.3, "w")
    w2 = numpy_helper.from_array(torch.randn(6, 3, 1, 1, generator=g).numpy() * 0.3, "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("LRN", ["r"], ["n"], size=5, alpha=1e-2, beta=0.75, bias=2.0),
        helper.make_node("Conv", ["x", "w2"], ["c2"]),
        helper.make_node("Sum", ["n", "c2", "r"], ["s"]),
        helper.make_node("Mean", ["s", "c2"], ["m"]),
        helper.make_node("Softsign", ["m"], ["ss"]),
        helper.make_node("Mish", ["ss"], ["mi"]),
        helper.make_node("MaxPool", ["mi"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("ArgMax", ["y"], ["where"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(nodes, "caffe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 3, 3]),
                               helper.make_tensor_value_info("where", TensorProto.INT64, [2, 3, 3])],
                              initializer=[w, w2])
    path = tmp_path / "caffe.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=g)
    wt, w2t = (torch.from_numpy(numpy_helper.to_array(t).copy()).double() for t in (w, w2))
    c = F.conv2d(x, wt, padding=1)
    r = c.relu()
    c2 = F.conv2d(x, w2t)
    m = (_lrn_reference(r, 5, _f32(1e-2), 0.75, 2.0) + c2 + r + c2) / 2
    ss = m / (1 + m.abs())
    want = F.max_pool2d(ss * torch.tanh(F.softplus(ss)), 2)
    for extra in ([], ["--train", "--no-update"]):
        out = tmp_path / f"caffe{len(extra)}.json"
        r = subprocess.run([memfit_cli, "import", str(path), *extra, "-o", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        graph_in = memfit.load(str(out))
        if extra:
            result = check_gradients(graph_in, seed=0, dtype=torch.float64)
            assert not result.missing and result.max_error < 1e-6, result
        else:
            got, where = memfit.run(graph_in, {"x": x, "w": wt, "w2": w2t}, dtype=torch.float64).values()
            assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
            assert torch.equal(where, want.argmax(1))


@pytest.mark.parametrize("blocksize", [2, 3])
def test_space_to_depth_follows_the_specification_and_inverts_depth_to_space(memfit_cli, tmp_path, blocksize):
    from onnx import TensorProto, helper

    n, c, h, w = 2, 3, 2 * blocksize, 3 * blocksize
    out_shape = [n, c * blocksize * blocksize, h // blocksize, w // blocksize]
    nodes = [helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=blocksize),
             helper.make_node("DepthToSpace", ["y"], ["back"], blocksize=blocksize)]
    graph = helper.make_graph(nodes, "s2d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape),
                               helper.make_tensor_value_info("back", TensorProto.FLOAT, [n, c, h, w])])
    path, out = tmp_path / "s2d.onnx", tmp_path / "s2d.json"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    r = subprocess.run([memfit_cli, "import", str(path), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    y, back = memfit.run(memfit.load(str(out)), {"x": x}, dtype=torch.float64).values()
    b = blocksize
    assert torch.equal(y, x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(out_shape))
    assert torch.equal(back, x)


# torch exports nn.Upsample at opset 9 as Upsample (deprecated at opset 10), with its
# scales an input; before opset 9 they were an attribute (hand-made below).
def test_upsample_of_older_opsets_equals_pytorch(memfit_cli, tmp_path):
    from onnx import TensorProto, helper

    torch.manual_seed(0)
    check(memfit_cli, tmp_path, nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2),
                                              nn.Conv2d(4, 2, 3)), torch.randn(2, 3, 5, 6), 9)
    node = helper.make_node("Upsample", ["x"], ["y"], mode="nearest", scales=[1.0, 1.0, 2.0, 3.0])
    graph = helper.make_graph([node], "up7", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 12])])
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    got = run_handmade(memfit_cli, tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)]),
                       {"x": x})
    assert torch.equal(got, F.interpolate(x, scale_factor=(2, 3), mode="nearest"))
    linear = helper.make_node("Upsample", ["x"], ["y"], mode="linear", scales=[1.0, 1.0, 2.0, 2.0])
    graph = helper.make_graph([linear], "up7", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 8])])
    path = tmp_path / "linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)]), str(path))
    r = subprocess.run([memfit_cli, "import", str(path), "-o", str(tmp_path / "l.json")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "asymmetric coordinates" in r.stderr and r.stderr.count("\n") == 1, r.stderr


# Element-wise ops of other exporters (TF / Keras converters, newer torch opsets)
# that the importer lacked: trigonometric and hyperbolic functions, IsNaN / IsInf,
# Shrink, ThresholdedRelu, CastLike, MeanVarianceNormalization, LpNormalization,
# GlobalLpPool, EyeLike and Size. Forward against torch's own functions in f64;
# with --train the differentiable ones' gradients against autograd.
def test_more_element_wise_ops_follow_their_specification(memfit_cli, tmp_path):
    from onnx import TensorProto, helper

    shape = [2, 3, 4, 5]
    nodes = [
        helper.make_node("Tan", ["x"], ["tan"]), helper.make_node("Sinh", ["x"], ["sinh"]),
        helper.make_node("Cosh", ["x"], ["cosh"]), helper.make_node("Asinh", ["x"], ["asinh"]),
        helper.make_node("Acosh", ["big"], ["acosh"]), helper.make_node("Atanh", ["unit"], ["atanh"]),
        helper.make_node("IsNaN", ["odd"], ["nan"]), helper.make_node("IsInf", ["odd"], ["inf"]),
        helper.make_node("IsInf", ["odd"], ["neg_inf"], detect_positive=0),
        helper.make_node("Shrink", ["x"], ["shrink"], lambd=0.3, bias=0.1),
        helper.make_node("ThresholdedRelu", ["x"], ["trelu"], alpha=0.4),
        helper.make_node("CastLike", ["x", "ids"], ["cast"]),
        helper.make_node("MeanVarianceNormalization", ["x"], ["mvn"]),
        helper.make_node("LpNormalization", ["x"], ["l2"], axis=1, p=2),
        helper.make_node("LpNormalization", ["x"], ["l1"], axis=-1, p=1),
        helper.make_node("GlobalLpPool", ["x"], ["pool"], p=3),
        helper.make_node("EyeLike", ["square"], ["eye"], k=1),
        helper.make_node("Size", ["x"], ["size"]), helper.make_node("Unsqueeze", ["size", "zero"], ["count"]),
        helper.make_node("Reshape", ["x", "count"], ["flat"]),  # Size folds into shape arithmetic
    ]
    f = lambda name, s=shape, t=TensorProto.FLOAT: helper.make_tensor_value_info(name, t, s)
    outputs = [f(n) for n in ("tan", "sinh", "cosh", "asinh", "acosh", "atanh")]
    outputs += [f("nan", [4], TensorProto.BOOL), f("inf", [4], TensorProto.BOOL), f("neg_inf", [4], TensorProto.BOOL)]
    outputs += [f(n) for n in ("shrink", "trelu")] + [f("cast", shape, TensorProto.INT64)]
    outputs += [f(n) for n in ("mvn", "l2", "l1")] + [f("pool", [2, 3, 1, 1]), f("eye", [3, 5]),
                                                     f("flat", [120])]
    inputs = [f("x"), f("big"), f("unit"), f("odd", [4]), f("ids", [2], TensorProto.INT64), f("square", [3, 5])]
    zero = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
    graph = helper.make_graph(nodes, "more", inputs, outputs, initializer=[zero])
    path, out = tmp_path / "more.onnx", tmp_path / "more.json"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), str(path))
    r = subprocess.run([memfit_cli, "import", str(path), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, generator=g) * 1.5
    big = 1 + torch.rand(*shape, dtype=torch.float64, generator=g) * 3
    unit = torch.rand(*shape, dtype=torch.float64, generator=g) * 1.8 - 0.9
    odd = torch.tensor([float("nan"), float("inf"), -float("inf"), 2.0], dtype=torch.float64)
    imported = memfit.load(str(out))
    results = memfit.run(imported, {"x": x, "big": big, "unit": unit, "odd": odd, "ids": torch.tensor([1, 2]),
                                    "square": torch.zeros(3, 5)}, dtype=torch.float64)
    got = [results[imported.tensors[t].name] for t in imported.outputs]
    mean = x.mean((0, 2, 3), keepdim=True)
    want = {
        "tan": x.tan(), "sinh": x.sinh(), "cosh": x.cosh(), "asinh": x.asinh(), "acosh": big.acosh(),
        "atanh": unit.atanh(), "nan": odd.isnan(), "inf": odd.isinf(), "neg_inf": odd.isneginf(),
        "shrink": torch.where(x < -_f32(0.3), x + _f32(0.1), torch.where(x > _f32(0.3), x - _f32(0.1), 0 * x)),
        "trelu": torch.where(x > _f32(0.4), x, torch.zeros_like(x)), "cast": x.long(),  # float32 attributes
        "mvn": (x - mean) / ((x * x).mean((0, 2, 3), keepdim=True) - mean * mean).sqrt().add(1e-9),
        "l2": x / x.norm(2, 1, keepdim=True), "l1": x / x.abs().sum(-1, keepdim=True),
        "pool": x.abs().pow(3).sum((2, 3), keepdim=True).pow(1 / 3), "eye": torch.eye(3, 5).roll(1, 1).triu(1),
        "flat": x.reshape(120),
    }
    assert len(got) == len(want)
    for (name, value), result in zip(want.items(), got):
        if value.is_floating_point():
            assert torch.allclose(result.double(), value.double(), rtol=1e-10, atol=1e-12), name
        else:
            assert torch.equal(result, value), name

    # Trained: the differentiable ones of x * w (w a parameter) into one output,
    # their gradients against autograd.
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [0.5, -1.0, 1.5])
    train_nodes = [helper.make_node("Mul", ["x", "w"], ["xw"])]
    for n in nodes:
        if n.output[0] in ("tan", "sinh", "cosh", "asinh", "shrink", "trelu", "mvn", "l2", "l1", "pool"):
            train_nodes.append(helper.make_node(n.op_type, ["xw"], list(n.output), **{
                a.name: helper.get_attribute_value(a) for a in n.attribute}))
    train_nodes += [helper.make_node("Cosh", ["xw"], ["c2"]), helper.make_node("Acosh", ["c2"], ["ac"]),
                    helper.make_node("Sigmoid", ["xw"], ["sg"]), helper.make_node("Atanh", ["sg"], ["at"]),
                    helper.make_node("Sum", ["tan", "sinh", "cosh", "asinh", "ac", "at", "shrink", "trelu", "mvn",
                                             "l2", "l1", "pool"], ["y"])]
    graph = helper.make_graph(train_nodes, "train", [f("x")], [f("y")], initializer=[w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), str(path))
    r = subprocess.run([memfit_cli, "import", str(path), "--train", "--no-update", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    result = check_gradients(memfit.load(str(out)), seed=0, dtype=torch.float64)
    assert not result.missing and result.max_error < 1e-6, result
