"""memfit.fit trains like eager: 10 steps of a CNN with BatchNorm, dropout and
SGD momentum, of the same with Adam, and of a BERT-style encoder, under 0.6 of
the step's peak (plans with recomputation or swapping), give losses,
parameters, buffers and optimizer states torch.equal to eager training's from
the same seed -- with an lr scheduler changing the learning rate on the way.
Also: plans cached per input signature, re-planning on a new one, the value
guard hook, and fit without the native module."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import memfit
from memfit.examples import TinyBert
from memfit.fit import optimizer_state_bytes

ROOT = Path(__file__).resolve().parents[2]
EXACT = torch.__version__ < "2"
needs_native = pytest.mark.skipif(not memfit.native_available(), reason="native module _memfit not built")


def cnn():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout(0.2),
                         nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))


def cnn_data(steps, batch=16):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g))
            for _ in range(steps)]


def bert_data(steps, batch=8, seq=16):
    g = torch.Generator().manual_seed(2)
    return [(torch.randint(0, 50, (batch, seq), generator=g), torch.randint(0, 3, (batch,), generator=g))
            for _ in range(steps)]


def sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)


def adam(params):
    return torch.optim.Adam(params, lr=1e-2, weight_decay=1e-4)


def adamw(params):  # decoupled weight decay: the parameter is scaled before the Adam step
    return torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05)


def train_both(make_model, make_opt, data, **fit_options):
    """(eager losses, memfit losses, eager model, memfit model, eager opt, memfit opt, step)."""
    torch.manual_seed(0)
    m1 = make_model()
    m2 = copy.deepcopy(m1)
    o1, o2 = make_opt(m1.parameters()), make_opt(m2.parameters())
    s1 = torch.optim.lr_scheduler.StepLR(o1, step_size=4, gamma=0.5)
    s2 = torch.optim.lr_scheduler.StepLR(o2, step_size=4, gamma=0.5)
    step = memfit.fit(m2, o2, F.cross_entropy, data[0], **fit_options)
    torch.manual_seed(7)
    eager = []
    for x, y in data:
        o1.zero_grad()
        loss = F.cross_entropy(m1(x), y)
        loss.backward()
        o1.step()
        s1.step()
        eager.append(loss.detach())
    eager_rng = torch.get_rng_state()
    torch.manual_seed(7)
    ours = []
    for x, y in data:
        ours.append(step(x, y))
        s2.step()
    # The generator is where eager left it (the same draws, in the same order).
    assert torch.equal(torch.get_rng_state(), eager_rng)
    return eager, ours, m1, m2, o1, o2, step


def assert_trained_equal(eager, ours, m1, m2, o1, o2):
    assert len(eager) == len(ours)
    for i, (a, b) in enumerate(zip(eager, ours)):
        assert torch.equal(a, b) if EXACT else torch.allclose(a, b, rtol=1e-5), f"loss of step {i}: {a} vs {b}"
    sd1, sd2 = m1.state_dict(), m2.state_dict()
    assert sd1.keys() == sd2.keys()
    for k in sd1:
        assert torch.equal(sd1[k], sd2[k]) if EXACT else torch.allclose(sd1[k], sd2[k], rtol=1e-5, atol=1e-7), k
    st1, st2 = o1.state_dict(), o2.state_dict()
    assert st1["param_groups"] == st2["param_groups"]
    assert st1["state"].keys() == st2["state"].keys()
    for i in st1["state"]:
        assert st1["state"][i].keys() == st2["state"][i].keys()
        for k, v in st1["state"][i].items():
            w = st2["state"][i][k]
            assert torch.equal(v, w) if isinstance(v, torch.Tensor) else v == w, (i, k)


def plan_kinds(step):
    kinds = {}
    for s in step.last.plan.steps:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    return kinds


@needs_native
@pytest.mark.parametrize("make_opt", [sgd, adam], ids=["sgd-momentum", "adam"])
def test_cnn_under_0_6_of_peak_trains_like_eager(make_opt):
    data = cnn_data(10)
    eager, ours, m1, m2, o1, o2, step = train_both(cnn, make_opt, data, mem_limit_ratio=0.6, work_budget=50)
    figures = step.last.figures
    assert figures["optimized"]["peak_bytes"] <= 0.6 * figures["original"]["peak_bytes"]
    kinds = plan_kinds(step)
    assert kinds.get("recompute", 0) + kinds.get("swap_out", 0) > 0, kinds
    assert step.captures == 1
    assert_trained_equal(eager, ours, m1, m2, o1, o2)
    # The lr scheduler's halvings reached the generated step (the losses would differ otherwise).
    assert o2.param_groups[0]["lr"] == pytest.approx(0.05 / 4 if make_opt is sgd else 1e-2 / 4)


def instance_norm_cnn():
    # InstanceNorm with running statistics: PyTorch repeats the buffers per
    # sample, BatchNorm updates the repeated copies in place and their mean is
    # copied back. Recomputing the repeat brought back the statistics before
    # that update, a plan memfit's checker refused ("sees 'repeat_2' after 0 of
    # its in-place updates"): the repeat is now never recomputed.
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.Hardswish(),
                         nn.InstanceNorm2d(8, affine=True, track_running_stats=True),
                         nn.Upsample(scale_factor=2, mode="bicubic", align_corners=False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


@needs_native
def test_instance_norm_running_statistics_under_a_limit_train_like_eager():
    data = [(torch.randn(4, 3, 16, 16), torch.randint(0, 3, (4,))) for _ in range(3)]
    eager, ours, m1, m2, o1, o2, step = train_both(instance_norm_cnn, adam, data, mem_limit_ratio=0.9,
                                                   work_budget=50)
    assert plan_kinds(step).get("recompute", 0) > 0
    assert_trained_equal(eager, ours, m1, m2, o1, o2)
    assert not torch.equal(m2[3].running_mean, torch.zeros(8))


# torch 1.13's CPU layer norm returns a bf16 input's statistics in bf16; the
# registry said float (the meta kernels' dtype, and CUDA's), so a bf16 model
# captured for real (a step that reads a value, or fake=False) was refused
# under a limit ("declared bf16[32, 1], the registry infers f32[32, 1]").
@needs_native
def test_a_bfloat16_layer_norm_captured_for_real_trains_like_eager_under_a_limit():
    def model():
        return nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.LayerNorm(64), nn.Linear(64, 3)).to(torch.bfloat16)

    def loss(out, y):
        return F.cross_entropy(out.float(), y)

    torch.manual_seed(0)
    m1 = model()
    m2 = copy.deepcopy(m1)
    o1, o2 = adam(m1.parameters()), adam(m2.parameters())
    data = [(torch.randn(32, 16).to(torch.bfloat16), torch.randint(0, 3, (32,))) for _ in range(3)]
    step = memfit.fit(m2, o2, loss, data[0], fake=False, mem_limit_ratio=0.9, work_budget=50)
    for x, y in data:
        o1.zero_grad()
        want = loss(m1(x), y)
        want.backward()
        o1.step()
        assert torch.equal(step(x, y), want.detach())
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert any(t.dtype == "bf16" and t.shape == [32, 1] for t in step.last.graph.tensors)  # as the kernel returns


class CheckpointedDropout(nn.Module):
    def __init__(self, reentrant):
        super().__init__()
        self.reentrant = reentrant
        self.block = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Dropout(0.2), nn.Linear(64, 16))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        return self.head(checkpoint(self.block, x, use_reentrant=self.reentrant) + x)


# torch.utils.checkpoint(use_reentrant=False) runs the block again in the backward
# with the forward's RNG state, so its dropout mask is drawn twice, equal. The trace
# recorded both draws from one stream: the gradients used another mask (losses 1e-2
# off eager by the third step). The capture runs the block once; the plan decides
# what to recompute.
@needs_native
@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_activation_checkpoint_with_dropout_trains_like_eager(reentrant):
    # (The reentrant checkpoint gives the block no gradients when its input needs none,
    # in eager as here: its parameters stay.)
    data = [(torch.randn(64, 16), torch.randint(0, 3, (64,))) for _ in range(3)]
    eager, ours, m1, m2, o1, o2, step = train_both(lambda: CheckpointedDropout(reentrant), adam, data,
                                                   mem_limit_ratio=None if reentrant else 0.8, work_budget=50)
    assert_trained_equal(eager, ours, m1, m2, o1, o2)
    assert sum("bernoulli" in op.type for op in step.last.graph.ops) == 1  # one mask per step, as eager draws


class SequentialCheckpoints(nn.Module):
    """checkpoint_sequential (reentrant, torch 1.13's default) over blocks whose input
    requires grad (a stem before them): its backward refused torch.autograd.grad."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(8, 32)
        self.body = nn.Sequential(*[nn.Sequential(nn.Linear(32, 32), nn.GELU(), nn.Dropout(0.1)) for _ in range(4)])
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint_sequential
        return self.head(checkpoint_sequential(self.body, 2, self.stem(x)))


def test_reentrant_checkpoints_whose_input_requires_grad_train_like_eager():
    data = [(torch.randn(64, 8), torch.randint(0, 3, (64,))) for _ in range(3)]
    eager, ours, m1, m2, o1, o2, step = train_both(SequentialCheckpoints, adam, data, mem_limit_ratio=0.9,
                                                   work_budget=50)
    assert_trained_equal(eager, ours, m1, m2, o1, o2)
    assert not step.segmented and sum("bernoulli" in op.type for op in step.last.graph.ops) == 4


class CheckpointedBatchNorm(nn.Module):
    """Two checkpointed blocks sharing one BatchNorm (the order of its four
    updates a step changes its running statistics), then a block with a
    dropout before its own BatchNorm when `dropout`."""

    def __init__(self, reentrant, dropout=False):
        super().__init__()
        self.reentrant = reentrant
        self.stem = nn.Linear(8, 16)
        self.norm = nn.BatchNorm1d(16)
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 16)
        self.last = nn.Sequential(nn.Dropout(0.2), nn.BatchNorm1d(16)) if dropout else nn.Identity()
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        h = self.stem(x)
        h = checkpoint(lambda t: F.gelu(self.norm(self.a(t))), h, use_reentrant=self.reentrant)
        h = checkpoint(lambda t: F.gelu(self.norm(self.b(t))), h, use_reentrant=self.reentrant)
        return self.head(checkpoint(self.last, h, use_reentrant=self.reentrant))


# Eager's backward runs a checkpointed block again, and a BatchNorm inside
# updates its running statistics a second time (torchvision's DenseNet with
# memory_efficient=True counted 1 batch a step where eager counts 2). The
# capture runs such blocks again after the loss, the last first, as eager's
# backward does. A block that also draws random numbers cannot be replayed
# with the same draws: fit runs it with graph breaks.
@pytest.mark.parametrize("fake", [True, False], ids=["fake", "real"])
@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_checkpointed_batchnorms_update_their_statistics_as_eagers_recomputation_does(reentrant, fake):
    data = [(torch.randn(32, 8), torch.randint(0, 3, (32,))) for _ in range(3)]
    eager, ours, m1, m2, o1, o2, step = train_both(lambda: CheckpointedBatchNorm(reentrant), sgd, data, fake=fake)
    assert_trained_equal(eager, ours, m1, m2, o1, o2)
    assert m2.norm.num_batches_tracked.item() == 4 * len(data) and not step.segmented


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_a_checkpointed_block_drawing_random_numbers_and_updating_statistics_runs_with_breaks(reentrant):
    data = [(torch.randn(32, 8), torch.randint(0, 3, (32,))) for _ in range(3)]
    with pytest.warns(UserWarning, match="draws random numbers .bernoulli_. and writes tensors it did not make"):
        eager, ours, m1, m2, o1, o2, step = train_both(lambda: CheckpointedBatchNorm(reentrant, dropout=True), sgd,
                                                       data)
    assert_trained_equal(eager, ours, m1, m2, o1, o2)
    assert m2.last[1].num_batches_tracked.item() == 2 * len(data) and step.segmented


def inplace_activations_cnn():
    # MobileNet's and EfficientNet's activations, in place as torchvision writes
    # them: autograd reads their inputs, so tracing copies each input first.
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(inplace=True),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.SiLU(inplace=True),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Hardswish(inplace=True),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


# The activations whose inputs tracing copied run out of place (so that they
# can be recomputed from their inputs) and the copies are dropped; ReLU's,
# whose input is not copied, is searched both in place and out of place. The
# step trains equal to eager.
@needs_native
def test_inplace_activations_run_out_of_place_and_train_like_eager():
    data = cnn_data(4)
    eager, ours, m1, m2, o1, o2, step = train_both(inplace_activations_cnn, sgd, data, mem_limit_ratio=0.6,
                                                    work_budget=50)
    graph = step.last.plan.graph
    types = {op.type for op in graph.ops}
    if EXACT:  # torch 1.13's tracing copies the three inputs (torch 2.x's may not)
        assert graph.metadata.get("rewrite.0") == "in-place ops out of place: 3 (copies dropped: 3)"
        assert {"aten.hardtanh", "aten.silu", "aten.hardswish"} <= types and "aten.clone" not in types, types
    assert step.last.figures["optimized"]["peak_bytes"] <= 0.6 * step.last.figures["original"]["peak_bytes"]
    assert_trained_equal(eager, ours, m1, m2, o1, o2)


@needs_native
@pytest.mark.parametrize("make_model,data", [(cnn, cnn_data), (lambda: TinyBert(seq=16, layers=2), bert_data)],
                         ids=["cnn", "bert"])
def test_adamw_trains_like_eager(make_model, data):
    # AdamW, the optimizer of most transformer training scripts: the
    # parameter decays (param.mul_(1 - lr * wd)) before Adam's step.
    eager, ours, m1, m2, o1, o2, step = train_both(make_model, adamw, data(6), mem_limit_ratio=0.7, work_budget=50)
    figures = step.last.figures
    assert figures["optimized"]["peak_bytes"] <= 0.7 * figures["original"]["peak_bytes"]
    assert any(s["kind"] in ("recompute", "swap_out") for s in step.last.plan.steps)
    decays = [op for op in step.last.plan.graph.ops if op.type == "aten.mul_" and op.phase == "optimizer"]
    assert len(decays) >= len(list(m2.parameters())), len(decays)  # one per parameter (and the moments')
    assert_trained_equal(eager, ours, m1, m2, o1, o2)


@needs_native
def test_fission_when_asked_trains_within_rounding_of_eager():
    # fission=True lets the optimizer split the step along the batch; the
    # parts sum gradients and losses in another order: equal within rounding.
    # (At 0.6 a plan without fission fits: the dropout masks are recomputed.)
    data = cnn_data(4)
    eager, ours, m1, m2, o1, o2, step = train_both(cnn, sgd, data, mem_limit_ratio=0.5, work_budget=50, fission=True)
    figures = step.last.figures
    assert figures["optimized"]["peak_bytes"] <= 0.5 * figures["original"]["peak_bytes"]
    assert any(k.startswith("fission.") for k in step.last.plan.graph.metadata), "the plan is not fissioned"
    for a, b in zip(eager, ours):
        assert torch.allclose(a, b, rtol=1e-5), (a, b)
    sd1, sd2 = m1.state_dict(), m2.state_dict()
    for k in sd1:
        assert torch.allclose(sd1[k].double(), sd2[k].double(), rtol=1e-5, atol=1e-6), k


class CatNet(nn.Module):
    """A U-Net block in small: the skip and the upsampled map concatenated into a convolution."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 16, 3, padding=1)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.fuse = nn.Conv2d(16 + 16, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        e = torch.relu(self.enc(x))
        u = torch.relu(self.up(torch.relu(self.down(e))))
        return self.head(torch.relu(self.fuse(torch.cat([e, u], 1))))


@needs_native
def test_concatenation_written_per_piece_trains_within_rounding_of_eager():
    # Under 0.6 of the peak with fission allowed, the plan is made from the
    # step with the convolution of the concatenation written per piece
    # (transform/concat_convolution.h): the pieces' partial sums add up in
    # another order, so equal within rounding.
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 3, 64, 64, generator=g), torch.randint(0, 4, (8, 64, 64), generator=g)) for _ in range(3)]
    eager, ours, m1, m2, o1, o2, step = train_both(CatNet, sgd, data, mem_limit_ratio=0.6, work_budget=50,
                                                   fission=True)
    assert step.last.plan.graph.metadata.get("fission.0") == "convolutions of concatenations split: 1"
    assert step.last.figures["optimized"]["peak_bytes"] <= 0.6 * step.last.figures["original"]["peak_bytes"]
    for a, b in zip(eager, ours):
        assert torch.allclose(a, b, rtol=1e-5), (a, b)
    sd1, sd2 = m1.state_dict(), m2.state_dict()
    for k in sd1:
        assert torch.allclose(sd1[k].double(), sd2[k].double(), rtol=1e-5, atol=1e-6), k


class SimCLR(nn.Module):
    """One encoder over two views at once (torch.cat([x1, x2])) and the NT-Xent loss over the 2n
    embeddings: every row's softmax reads every other row (z @ z.t())."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8))

    def forward(self, x1, x2):
        z = F.normalize(self.enc(torch.cat([x1, x2])), dim=1)
        n = x1.shape[0]
        sim = (z @ z.t() / 0.5).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


@needs_native
def test_a_contrastive_step_splits_its_encoder_forward_and_backward():
    # The similarity of every pair ends the batch's runs: the encoder's
    # forward is one run, its backward another. The concatenation of the
    # views is the batch (analysis/dims.cc), so the backward is split with
    # its forward copied before it, and the forward, whose maps then die in
    # it, is split too: under 0.4 of the peak, where the forward alone held
    # 0.83 whole. f64: equal to eager within 1e-12.
    torch.manual_seed(0)
    m1 = SimCLR().double()
    m2 = copy.deepcopy(m1)
    o1, o2 = (torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (m1, m2))
    g = torch.Generator().manual_seed(1)
    data = [tuple(torch.randn(8, 3, 12, 12, generator=g, dtype=torch.float64) for _ in range(2)) for _ in range(3)]
    step = memfit.fit(m2, o2, None, data[0], mem_limit_ratio=0.4, fission=True)
    fissions = [v for k, v in step.last.plan.graph.metadata.items() if k.startswith("fission.")]
    assert fissions[0].startswith("recompute:") and len(fissions) == 3, fissions
    assert fissions[2].startswith("cat[0] (batch)") and fissions[2].endswith("(convolution .. t_1)"), fissions
    assert step.last.figures["optimized"]["peak_bytes"] <= 0.4 * step.last.figures["original"]["peak_bytes"]
    for x1, x2 in data:
        o1.zero_grad()
        expected = m1(x1, x2)
        expected.backward()
        o1.step()
        assert abs(step(x1, x2).item() - expected.item()) <= 1e-12
    for k, v in m1.state_dict().items():
        assert (m2.state_dict()[k] - v).abs().max().item() <= 1e-12, k


@needs_native
def test_fission_splits_a_captured_encoder_with_dropout_within_rounding_of_eager():
    # The whole step, embedding to its gradient, micro-batched; dropout's
    # masks are drawn whole as bools before the parts (torch's generator ends
    # where eager's does: train_both checks it) and expanded per part.
    data = bert_data(4, batch=12)
    eager, ours, m1, m2, o1, o2, step = train_both(lambda: TinyBert(seq=16, layers=2), adamw, data,
                                                   mem_limit_ratio=0.4, work_budget=100, fission=True)
    fissions = [v for k, v in step.last.plan.graph.metadata.items() if k.startswith("fission.")]
    assert fissions and "(embedding .. embedding_dense_backward" in fissions[0], fissions
    assert any(op.type == "aten.bernoulli" for op in step.last.plan.graph.ops)
    for a, b in zip(eager, ours):
        assert torch.allclose(a, b, rtol=1e-5), (a, b)
    sd1, sd2 = m1.state_dict(), m2.state_dict()
    for k in sd1:
        # AdamW's step is about lr * sign(gradient): the key bias's gradient
        # is zero but for rounding (softmax ignores a shift of the scores),
        # so it may step either way (lr 1e-2, 4 steps); the rest agree.
        tolerance = 2 * 1e-2 * len(data) if k.endswith("qkv.bias") else 1e-5
        assert (sd1[k].double() - sd2[k].double()).abs().max().item() <= tolerance, k


@needs_native
def test_bert_style_encoder_under_0_6_of_peak_trains_like_eager():
    data = bert_data(10)
    eager, ours, m1, m2, o1, o2, step = train_both(lambda: TinyBert(seq=16, layers=2), adam, data,
                                                   mem_limit_ratio=0.6, work_budget=50)
    figures = step.last.figures
    assert figures["optimized"]["peak_bytes"] <= 0.6 * figures["original"]["peak_bytes"]
    assert any(s["kind"] in ("recompute", "swap_out") for s in step.last.plan.steps)
    assert_trained_equal(eager, ours, m1, m2, o1, o2)


@needs_native
def test_dropout_masks_are_recomputed_and_train_like_eager():
    # Traced dropout draws into an empty tensor in place (bernoulli_) and
    # scales it in place (div_); written out of place (transform/
    # out_of_place.h), the plan may drop a mask and draw it again, the RNG
    # state replayed: the same numbers as eager's.
    eager, ours, m1, m2, o1, o2, step = train_both(lambda: TinyBert(seq=16, layers=2), adam, bert_data(4),
                                                   mem_limit_ratio=0.5, work_budget=50)
    plan = step.last.plan
    if EXACT:  # torch 1.13 traces dropout as bernoulli_ (torch 2.x's tracing may not)
        redrawn = [s for s in plan.steps if s["kind"] == "recompute" and plan.graph.ops[s["op"]].type == "aten.bernoulli"]
        assert redrawn, "no mask drawn again"
        assert "aten.bernoulli_" not in {op.type for op in plan.graph.ops}
    assert_trained_equal(eager, ours, m1, m2, o1, o2)


# Optimizers whose update memfit does not write into the graph: torch.optim's own
# step runs after the planned forward and backward, on the plan's gradients.
OTHER_OPTIMIZERS = {
    "rmsprop-centered-momentum": lambda ps: torch.optim.RMSprop(ps, lr=1e-3, momentum=0.9, centered=True),
    "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=1e-2, lr_decay=1e-3, weight_decay=1e-4),
    "adamax": lambda ps: torch.optim.Adamax(ps, lr=2e-3),
    "nadam": lambda ps: torch.optim.NAdam(ps, lr=2e-3),
    "adam-amsgrad": lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True),
    "rprop": lambda ps: torch.optim.Rprop(ps, lr=1e-3),
}


@needs_native
@pytest.mark.parametrize("name", sorted(OTHER_OPTIMIZERS))
def test_other_optimizers_step_after_the_plan_and_train_like_eager(name):
    make_opt = OTHER_OPTIMIZERS[name]
    data = cnn_data(6)
    eager, ours, m1, m2, o1, o2, step = train_both(cnn, make_opt, data, mem_limit_ratio=0.6, work_budget=50)
    figures = step.last.figures
    assert figures["optimizer_update"] == f"torch.optim.{type(o2).__name__}.step after the plan"
    # The state is held beside the plan, outside its graph: the limit is 0.6 of
    # the step's peak with it, and the plan gets what the state leaves.
    state = figures["optimizer_state_bytes"]
    assert state == optimizer_state_bytes(o1) > 0
    assert figures["optimized"]["peak_bytes"] + state <= 0.6 * (figures["original"]["peak_bytes"] + state)
    kinds = plan_kinds(step)
    assert kinds.get("recompute", 0) + kinds.get("swap_out", 0) > 0, kinds
    assert step.captures == 1
    assert all(p.grad is None for p in m2.parameters())  # .grad put back as it was
    assert_trained_equal(eager, ours, m1, m2, o1, o2)


class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32, padding_idx=0)
        self.enc = nn.GRU(32, 48, batch_first=True)
        self.dec = nn.GRU(32, 48, batch_first=True)
        self.out = nn.Linear(48, 100)

    def forward(self, src, tgt_in):
        _, h = self.enc(self.emb(src))
        o, _ = self.dec(self.emb(tgt_in), h)
        return F.log_softmax(self.out(o), -1)


@needs_native
def test_gru_seq2seq_plans_where_only_a_looser_budget_made_a_plan_within_the_limit():
    # At this limit every heuristic gave up on its recomputation under the
    # limit's own budget, while the bisection for the smallest memory made a
    # plan within it under a looser one (575.14 KiB under 582.84 KiB): the
    # limit was called unreachable with a smaller "smallest memory" than it.
    g = torch.Generator().manual_seed(1)
    src, tin = torch.randint(1, 100, (16, 12), generator=g), torch.randint(1, 100, (16, 10), generator=g)
    tout = tin.roll(-1, 1)
    tout[:, -2:] = 0
    torch.manual_seed(0)
    m1 = Seq2Seq()
    m2 = copy.deepcopy(m1)
    o1 = torch.optim.RMSprop(m1.parameters(), 1e-3, momentum=0.9)
    o2 = torch.optim.RMSprop(m2.parameters(), 1e-3, momentum=0.9)

    def loss_fn(out, y):
        return F.nll_loss(out.reshape(-1, 100), y.reshape(-1), ignore_index=0)

    step = memfit.fit(m2, o2, loss_fn, (src, tin, tout), mem_limit_ratio=0.8)
    eager, ours = [], []
    for _ in range(3):
        o1.zero_grad()
        loss = loss_fn(m1(src, tin), tout)
        loss.backward()
        o1.step()
        eager.append(loss.detach())
        ours.append(step(src, tin, tout))
    figures = step.last.figures
    state = figures["optimizer_state_bytes"]
    assert figures["optimized"]["peak_bytes"] + state <= 0.8 * (figures["original"]["peak_bytes"] + state)
    assert_trained_equal(eager, ours, m1, m2, o1, o2)


@pytest.mark.parametrize("name", sorted(OTHER_OPTIMIZERS))
def test_optimizer_state_bytes_before_the_first_step_are_what_it_creates(name):
    model = cnn()
    opt = OTHER_OPTIMIZERS[name](model.parameters())
    before = optimizer_state_bytes(opt)
    x, y = cnn_data(1, batch=2)[0]
    F.cross_entropy(model(x), y).backward()
    opt.step()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    after = optimizer_state_bytes(opt)
    if name == "rprop":
        # Rprop reads its tensors' values (a masked assignment): no meta step;
        # twice the parameters, what it creates (its step count is a number).
        assert before == after == 2 * params
    else:
        assert before == after > params


def frozen_stem_cnn():
    """The CNN with its first convolution and BatchNorm frozen (fine-tuning a pretrained stem)."""
    model = cnn()
    for p in list(model[0].parameters()) + list(model[1].parameters()):
        p.requires_grad_(False)
    return model


@needs_native
@pytest.mark.parametrize("make_opt", [sgd, adamw], ids=["sgd-momentum", "adamw"])
def test_frozen_parameters_stay_and_the_rest_trains_like_eager(make_opt):
    # The optimizer holds every parameter, as a fine-tuning script often
    # does: torch.optim skips those without a gradient, creating no state.
    data = cnn_data(4)
    eager, ours, m1, m2, o1, o2, step = train_both(frozen_stem_cnn, make_opt, data, mem_limit_ratio=0.8,
                                                   work_budget=50)
    assert_trained_equal(eager, ours, m1, m2, o1, o2)
    frozen = [m2[0].weight, m2[0].bias, m2[1].weight, m2[1].bias]
    assert all(p.grad is None and p not in o2.state and not p.requires_grad for p in frozen)
    torch.manual_seed(0)
    assert torch.equal(m2[0].weight, cnn()[0].weight)  # the stem as it was built
    grads = {t.name for t in step.last.plan.graph.tensors if t.name.endswith(".grad")}
    assert "0.weight.grad" not in grads and "3.weight.grad" in grads


def frozen_batchnorm_cnn():
    """The frozen stem with its BatchNorm in evaluation mode while the rest trains
    (detection fine-tuning's frozen BatchNorm, a distillation teacher)."""
    model = frozen_stem_cnn()
    model[1].eval()
    return model


# A BatchNorm in evaluation saves no statistics: the CPU kernel returns them
# empty, but torch 1.13's meta kernel per channel, so the fake capture declared
# [16] where the graph ran [0] and every optimize refused the graph.
@needs_native
def test_a_batchnorm_in_evaluation_mode_inside_a_training_step_trains_like_eager():
    data = cnn_data(3)
    eager, ours, m1, m2, o1, o2, step = train_both(frozen_batchnorm_cnn, sgd, data, mem_limit_ratio=0.8,
                                                   work_budget=50)
    assert_trained_equal(eager, ours, m1, m2, o1, o2)
    assert torch.equal(m2[1].running_mean, torch.zeros(16)) and not m2[1].training
    evaluation = [op for op in step.last.graph.ops if op.type == "aten.native_batch_norm" and not op.attrs["training"]]
    assert len(evaluation) == 1
    assert step.last.graph.tensors[evaluation[0].outputs[1]].shape == [0]


@needs_native
def test_check_compares_generated_code_with_the_interpreter_on_copies():
    data = cnn_data(3, batch=8)
    model = cnn()
    opt = adam(model.parameters())
    step = memfit.fit(model, opt, F.cross_entropy, data[0], mem_limit_ratio=0.6, work_budget=50)
    first = step.check(*data[0])  # before the first step: the optimizer has no state yet
    assert first and all(v == 0.0 for v in first.values()), {k: v for k, v in first.items() if v}
    assert len(opt.state) == 0
    step(*data[0])
    step(*data[1])
    before = copy.deepcopy((model.state_dict(), opt.state_dict()))
    rng = torch.get_rng_state()
    diff = step.check(*data[2])
    assert "0.weight" in diff and "0.weight.exp_avg" in diff and "1.running_mean" in diff
    assert all(v == 0.0 for v in diff.values()), {k: v for k, v in diff.items() if v}
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[0][k]), k
    assert float(opt.state[model[0].weight]["step"]) == 2.0
    # Not vacuous: generated code that gets the optimizer's numbers wrong differs from the interpreter.
    fn = step.last.compiled.fn
    step.last.compiled.fn = lambda S, P: fn(S, [x * 1.01 for x in P])
    assert step.check(*data[2])["0.weight"] > 0


def test_program_order_without_a_limit_trains_like_eager():
    data = cnn_data(3, batch=4)
    eager, ours, m1, m2, o1, o2, step = train_both(cnn, sgd, data)
    assert step.last.figures == {}  # no optimizer run
    # Captured with fake tensors (adaptive_avg_pool2d's backward has memfit's meta rule on torch 1.13).
    assert step.last.graph.metadata["tracing"] == "fake"
    assert_trained_equal(eager, ours, m1, m2, o1, o2)


def test_checkpoint_resume_continues_like_eager():
    """Train 3 steps, checkpoint (model and optimizer state_dict), resume into fresh objects
    with a new memfit.fit, train 2 more: the same as 5 eager steps (Adam's step counts too)."""
    data = cnn_data(5, batch=4)
    torch.manual_seed(0)
    m1 = cnn()
    m2 = copy.deepcopy(m1)
    m3 = cnn()  # made here: its initialization draws from the generator the dropouts use
    o1 = adam(m1.parameters())
    o2 = adam(m2.parameters())
    torch.manual_seed(9)
    for x, y in data:
        o1.zero_grad()
        F.cross_entropy(m1(x), y).backward()
        o1.step()
    torch.manual_seed(9)
    step = memfit.fit(m2, o2, F.cross_entropy, data[0])
    for x, y in data[:3]:
        step(x, y)
    ckpt = copy.deepcopy({"model": m2.state_dict(), "opt": o2.state_dict()})
    o3 = adam(m3.parameters())
    m3.load_state_dict(ckpt["model"])
    o3.load_state_dict(ckpt["opt"])
    resumed = memfit.fit(m3, o3, F.cross_entropy, data[0])
    for x, y in data[3:]:
        resumed(x, y)
    for (name, a), b in zip(m1.state_dict().items(), m3.state_dict().values()):
        assert torch.equal(a, b), name
    assert float(o3.state[next(m3.parameters())]["step"]) == 5.0


def test_without_optimizer_gradients_accumulate_into_grad():
    torch.manual_seed(0)
    m1 = cnn()
    m2 = copy.deepcopy(m1)
    (x, y), (x2, y2) = cnn_data(2, batch=4)
    step = memfit.fit(m2, None, F.cross_entropy, (x, y))
    torch.manual_seed(3)
    F.cross_entropy(m1(x), y).backward()
    F.cross_entropy(m1(x2), y2).backward()
    torch.manual_seed(3)
    step(x, y)
    step(x2, y2)
    for (name, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        assert torch.equal(p1.grad, p2.grad), name
    assert torch.equal(m1.state_dict()["1.running_mean"], m2.state_dict()["1.running_mean"])


def test_generated_step_is_python_source_with_aten_calls_and_dels():
    data = cnn_data(1, batch=4)
    model = cnn()
    step = memfit.fit(model, sgd(model.parameters()), F.cross_entropy, data[0])
    src = step.last.compiled.source
    assert src.startswith("def memfit_step(S, P):")
    assert "del v" in src and "P[" in src
    assert "memfit.plan" not in src and "execute" not in src


def test_new_signature_replans_and_same_signature_reuses():
    model = cnn()
    opt = sgd(model.parameters())
    x, y = cnn_data(1, batch=4)[0]
    step = memfit.fit(model, opt, F.cross_entropy, (x, y))
    assert step.captures == 1
    step(x, y)
    step(x.clone(), y.clone())
    assert step.captures == 1
    x2, y2 = cnn_data(1, batch=2)[0]
    loss = step(x2, y2)
    assert step.captures == 2 and loss.shape == ()
    step(x, y)
    assert step.captures == 2  # the batch-4 plan is still cached
    model.eval()
    step(x, y)  # eval mode: BatchNorm uses running statistics, no dropout: another graph
    assert step.captures == 3
    assert len(step.plans) == 3


def test_value_guards_hook_recaptures_when_guards_fail():
    model = cnn()
    step = memfit.fit(model, sgd(model.parameters()), F.cross_entropy, cnn_data(1, batch=2)[0])
    x, y = cnn_data(1, batch=2)[0]
    entry = step.last
    calls = []
    entry.guards = lambda *inputs: calls.append(len(inputs)) or False  # a capture valid for no value
    step(x, y)
    assert calls == [2] and step.captures == 2
    assert step.last is not entry


def test_errors_are_memfit_errors():
    model = cnn()
    x, y = cnn_data(1, batch=2)[0]
    with pytest.raises(memfit.Error, match="at most one of"):
        memfit.fit(model, sgd(model.parameters()), F.cross_entropy, (x, y), mem_limit_ratio=0.5, lat_limit_ratio=1.2)
    with pytest.raises(memfit.Error, match="LBFGS is not supported: its step needs a closure"):
        memfit.fit(model, torch.optim.LBFGS(model.parameters()), F.cross_entropy, (x, y))
    with pytest.raises(memfit.Error, match="must be a torch.optim.Optimizer"):
        memfit.fit(model, {"lr": 0.1}, F.cross_entropy, (x, y))
    with pytest.raises(memfit.Error, match="unknown option"):
        memfit.fit(model, sgd(model.parameters()), F.cross_entropy, (x, y), colour="red")
    # Modules a capture cannot trace are named, not a RuntimeError from inside torch.
    scripted = nn.Sequential(nn.Flatten(), torch.jit.script(nn.Linear(3 * 32 * 32, 10)))
    with pytest.raises(memfit.Error, match="submodule '1' is a TorchScript module"):
        memfit.fit(scripted, sgd(scripted.parameters()), F.cross_entropy, (x, y))
    lazy = nn.Sequential(nn.Flatten(), nn.LazyLinear(10))
    with pytest.raises(memfit.Error, match="parameter '1.weight' is uninitialized .a lazy module.; run one forward"):
        memfit.fit(lazy, sgd(lazy.parameters()), F.cross_entropy, (x, y))
    # A loss with parameters of its own (an ArcFace head) in the optimizer: what to do instead.
    head = nn.Linear(10, 10)
    with pytest.raises(memfit.Error, match=r"not a parameter of the model but of loss_fn \(Sequential\); .* pass "
                                           r"loss_fn=None"):
        memfit.fit(model, sgd([*model.parameters(), *head.parameters()]), nn.Sequential(head, nn.CrossEntropyLoss()),
                   (x, y))


@needs_native
def test_unreachable_limit_is_a_memfit_error():
    model = cnn()
    with pytest.raises(memfit.Error, match="cannot be met.*optimizer state alone take [^;]*$"):
        memfit.fit(model, sgd(model.parameters()), F.cross_entropy, cnn_data(1, batch=2)[0], mem_limit_ratio=0.05,
                   work_budget=20)
    # Above the parameters, the error says that fission may reach less, unless fission was asked for.
    # It is a memfit.NoPlanFits with the smallest memory reached, as the message says it.
    with pytest.raises(memfit.NoPlanFits, match="smallest memory .*; fit.*fission=True. splits ops into parts and "
                                                "may") as hinted:
        memfit.fit(model, sgd(model.parameters()), F.cross_entropy, cnn_data(1, batch=2)[0], mem_limit_ratio=0.12,
                   work_budget=20)
    assert f"({hinted.value.reached_bytes} bytes" in str(hinted.value)
    with pytest.raises(memfit.NoPlanFits, match="cannot be met") as asked:
        memfit.fit(model, sgd(model.parameters()), F.cross_entropy, cnn_data(1, batch=2)[0], mem_limit_ratio=0.12,
                   work_budget=20, fission=False)
    assert "fission=True" not in str(asked.value)


@needs_native
def test_saved_plan_runs_without_replanning(tmp_path):
    data = cnn_data(4)
    model = cnn()
    step = memfit.fit(model, adam(model.parameters()), F.cross_entropy, data[0], mem_limit_ratio=0.6, work_budget=50)
    path = str(tmp_path / "plan.json")
    step.save_plan(path)
    # Elsewhere (here: a copy of the model), fit(plan=...) uses the plan as is.
    torch.manual_seed(0)
    ma = cnn()
    mb = copy.deepcopy(ma)
    sa = memfit.fit(ma, adam(ma.parameters()), F.cross_entropy, data[0], mem_limit_ratio=0.6, work_budget=50)
    sb = memfit.fit(mb, adam(mb.parameters()), F.cross_entropy, data[0], plan=path)
    assert sb.last.figures == {} and sb.last.plan.steps == step.last.plan.steps
    for x, y in data:
        torch.manual_seed(3)
        la = sa(x, y)
        torch.manual_seed(3)
        lb = sb(x, y)
        assert torch.equal(la, lb)
    other = TinyBert(seq=16)
    with pytest.raises(memfit.Error, match="has a source '0.weight'|source .* of the step's graph is"):
        memfit.fit(other, adam(other.parameters()), F.cross_entropy, bert_data(1)[0], plan=path)


def test_fit_and_generated_code_run_without_the_native_module(tmp_path):
    """The GPU machine has no native module: capture, program order and the generated step still work."""
    script = tmp_path / "no_native.py"
    script.write_text(
        "import sys\n"
        "sys.modules['_memfit'] = None\n"
        "sys.modules['memfit._memfit'] = None\n"
        "import torch, torch.nn as nn, torch.nn.functional as F, memfit\n"
        "assert not memfit.native_available()\n"
        "assert memfit.retain_cpu_memory()  # glibc\n"
        "m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))\n"
        "opt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))\n"
        "step = memfit.fit(m, opt, F.cross_entropy, (x, y))\n"
        "l0 = step(x, y); l1 = step(x, y)\n"
        "assert l1 < l0, (l0, l1)\n"
        "try:\n"
        "    memfit.fit(m, opt, F.cross_entropy, (x, y), mem_limit_ratio=0.5)\n"
        "except memfit.Error as e:\n"
        "    assert 'native module' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('expected memfit.Error')\n"
        "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_fit_retains_cpu_memory_by_default(tmp_path):
    """A model on the CPU: fit calls memfit.retain_cpu_memory() unless retain_cpu_memory=False,
    so a freed 64 MiB tensor stays in the process (glibc no longer returns it to the OS) and
    the next step does not page-fault it back. In a child process: the setting is process-wide."""
    script = tmp_path / "retain.py"
    script.write_text(
        "import torch, torch.nn as nn, torch.nn.functional as F, memfit\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "def kept_after_free():\n"
        "    t = torch.ones(16 << 20)  # 64 MiB, touched\n"
        "    before = rss()\n"
        "    del t\n"
        "    return before - rss() < (32 << 20)\n"
        "m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))\n"
        "opt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))\n"
        "step = memfit.fit(m, opt, F.cross_entropy, (x, y), retain_cpu_memory=False)\n"
        "assert not step.retained_cpu_memory\n"
        "assert not kept_after_free(), 'glibc default: a large free goes back to the OS'\n"
        "step = memfit.fit(m, opt, F.cross_entropy, (x, y))\n"
        "assert step.retained_cpu_memory\n"
        "assert kept_after_free(), 'retained: a large free stays in the process'\n"
        "step(x, y)\n"
        "print('ok')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_zoo_script_trains_a_segmentation_model_like_eager(capsys):
    """python/bench/fit_zoo.py (the sweep over torchvision is a benchmark) on one segmentation
    model (a dict output: the loss is on out["out"]) and one skipped by name."""
    sys.path.insert(0, str(ROOT / "python" / "bench"))
    import fit_zoo

    assert fit_zoo.main(["--models", "lraspp_mobilenet_v3_large,resnet18", "--skip", "resnet18", "--image", "32",
                         "--ratio", "0"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("lraspp_mobilenet_v3_large "))
    assert " equal " in row
    assert "segmentation: 1 models: 1 equal, 0 close, 0 differs, 0 failed, 0 skipped" in out
    assert "classification: 1 models: 0 equal, 0 close, 0 differs, 0 failed, 1 skipped" in out
    assert "resnet18: skipped: --skip" in out


class Tagger(nn.Module):
    """Emissions from the forward; the transitions, a parameter, read only by the loss (a CRF)."""

    def __init__(self, tags=4):
        super().__init__()
        self.emit = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, tags))
        self.trans = nn.Parameter(torch.randn(tags, tags) * 0.1)

    def forward(self, x):
        return self.emit(x)


@pytest.mark.parametrize("fake", [True, False])
def test_a_loss_fn_reading_the_models_parameter_and_a_constant_twice_trains_like_eager(fake):
    torch.manual_seed(0)
    m1 = Tagger()
    m2 = copy.deepcopy(m1)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0])  # class weights, read twice

    def loss_of(model):
        def crf(em, tags):
            alpha = em[:, 0]
            for t in range(1, em.shape[1]):
                alpha = torch.logsumexp(alpha[:, :, None] + model.trans[None] + em[:, t, None, :], 1)
            score = em.gather(2, tags[..., None]).squeeze(2).sum(1) + model.trans[tags[:, :-1], tags[:, 1:]].sum(1)
            weighted = F.cross_entropy(em.reshape(-1, 4), tags.reshape(-1), weight=weight)
            return (torch.logsumexp(alpha, 1) - score).mean() + weighted + 0.01 * (em * weight).mean()
        return crf

    o1, o2 = adam(m1.parameters()), adam(m2.parameters())
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(3, 5, 6, generator=g), torch.randint(0, 4, (3, 5), generator=g)) for _ in range(3)]
    step = memfit.fit(m2, o2, loss_of(m2), data[0], fake=fake)
    for x, tags in data:
        o1.zero_grad()
        loss = loss_of(m1)(m1(x), tags)
        loss.backward()
        o1.step()
        assert torch.equal(step(x, tags), loss.detach())
    assert not torch.equal(m2.trans, Tagger().trans)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


class ReadsSign(nn.Module):
    """Dropout and, with `reads`, a value read in Python (graph breaks with specialize=False)."""

    def __init__(self, reads=False):
        super().__init__()
        self.reads = reads
        self.a, self.drop, self.b = nn.Linear(8, 32), nn.Dropout(0.1), nn.Linear(32, 3)

    def forward(self, x):
        h = self.drop(torch.relu(self.a(x)))
        if self.reads:
            h = h * (1 + int(h.sum() > 0))
        return self.b(h)


# clip_grad_norm_ between backward and step, as transformer loops do: inside the
# plan (SGD, AdamW), before torch.optim's own step (RMSprop), and before the
# update of a step with graph breaks; the norms here are 3 to 5, clipped to 0.5.
@pytest.mark.parametrize("make_opt, breaks", [(sgd, False), (adamw, False),
                                              (lambda p: torch.optim.RMSprop(p, lr=1e-2), False), (adamw, True)],
                         ids=["sgd", "adamw", "rmsprop-own-step", "adamw-breaks"])
def test_max_grad_norm_clips_like_clip_grad_norm_and_trains_like_eager(make_opt, breaks):
    torch.manual_seed(0)
    m1 = ReadsSign(breaks)
    m2 = copy.deepcopy(m1)
    o1, o2 = make_opt(m1.parameters()), make_opt(m2.parameters())
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(16, 8, generator=g) * 5, torch.randint(0, 3, (16,), generator=g)) for _ in range(4)]
    step = memfit.fit(m2, o2, F.cross_entropy, data[0], max_grad_norm=0.5, specialize=not breaks,
                      **({} if breaks else {"mem_limit_ratio": 0.9, "work_budget": 50}))
    for i, (x, y) in enumerate(data):
        torch.manual_seed(i)
        o1.zero_grad()
        loss = F.cross_entropy(m1(x), y)
        loss.backward()
        assert torch.nn.utils.clip_grad_norm_(m1.parameters(), 0.5) > 1  # clipping, not a no-op
        o1.step()
        torch.manual_seed(i)
        assert torch.equal(step(x, y), loss.detach()), i
    assert step.segmented == breaks
    assert_trained_equal([], [], m1, m2, o1, o2)


def test_max_grad_norm_needs_an_optimizer_and_a_positive_norm():
    model = cnn()
    x, y = cnn_data(1, batch=2)[0]
    with pytest.raises(memfit.Error, match="max_grad_norm clips the gradients the optimizer steps on"):
        memfit.fit(model, None, F.cross_entropy, (x, y), max_grad_norm=1.0)
    with pytest.raises(memfit.Error, match="max_grad_norm = 0 must be a positive number"):
        memfit.fit(model, sgd(model.parameters()), F.cross_entropy, (x, y), max_grad_norm=0)


def sparse_bag():
    return nn.Sequential(nn.Embedding(100, 8, sparse=True), nn.Flatten(), nn.Linear(5 * 8, 3))


# The sparse gradient is made by _sparse_coo_tensor_with_dims_and_tensors, whose
# layout argument the generated code passed as the string "torch.sparse_coo".
def test_a_sparse_embedding_trains_like_eager():
    g = torch.Generator().manual_seed(5)
    data = [(torch.randint(0, 100, (16, 5), generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(3)]
    eager, ours, m1, m2, o1, o2, _ = train_both(sparse_bag, lambda p: torch.optim.SGD(p, lr=0.1), data)
    o1.state.clear()  # torch 1.13's SGD without momentum records {"momentum_buffer": None}; memfit nothing
    assert_trained_equal(eager, ours, m1, m2, o1, o2)


class _ReadsAValue(nn.Module):
    """Divides by a value read with .item(): a new value each step, so the step
    ends up running with graph breaks (each child module a planned segment)."""

    def __init__(self):
        super().__init__()
        self.a, self.h = nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.h(h / (h.max().item() + 1))


def _hooked(make_model, hooked):
    torch.manual_seed(0)
    model = make_model()
    if hooked:
        _add_gradient_hooks(model)
    return model


def _add_gradient_hooks(model):
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    first, last = linears[0], linears[-1]
    first.weight.register_hook(lambda g: g * 0.1)  # a per-parameter learning-rate scale
    last.bias.register_hook(lambda g: g.clamp(-0.01, 0.01))  # per-parameter clipping


# p.register_hook puts a hook on a parameter's gradient; loss.backward() runs it
# before accumulating .grad. The traced step took gradients with
# torch.autograd.grad, which leaves such hooks out (torch 1.13), so the hooked
# parameters trained as if there were no hook (and a hook added later was not
# seen at all).
@needs_native
@pytest.mark.parametrize("case", ["one-graph", "added-after-two-steps", "graph-breaks"])
def test_hooks_on_parameters_run_on_their_gradients_as_in_eager(case):
    make_model = _ReadsAValue if case == "graph-breaks" else (
        lambda: nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)))
    late = case == "added-after-two-steps"
    m1, m2 = _hooked(make_model, not late), _hooked(make_model, not late)
    o1, o2 = adam(m1.parameters()), adam(m2.parameters())
    g = torch.Generator().manual_seed(4)
    data = [(torch.randn(8, 16, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(6)]
    step = memfit.fit(m2, o2, F.cross_entropy, data[0])
    for i, (x, y) in enumerate(data):
        if late and i == 2:
            _add_gradient_hooks(m1), _add_gradient_hooks(m2)
        o1.zero_grad()
        F.cross_entropy(m1(x), y).backward()
        o1.step()
        step(x, y)
    for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
        assert torch.equal(a, b) if EXACT else torch.allclose(a, b, rtol=1e-5), name
    if case == "graph-breaks":
        assert type(step.last).__name__ == "_SegmentedEntry"


class _EmbeddingBag(nn.Module):
    def __init__(self, read_a_value=False):
        super().__init__()
        self.e, self.a, self.h = nn.Embedding(50, 16), nn.Linear(16, 16), nn.Linear(16, 3)
        self.read_a_value = read_a_value

    def forward(self, t):
        h = torch.relu(self.a(self.e(t).mean(1)))
        return self.h(h / (h.max().item() + 1) if self.read_a_value else h)


# A second optimizer the loop steps itself (the embeddings' own, as a
# recommender's SparseAdam beside Adam) needs .grad of the parameters fit's
# optimizer does not hold: loss.backward() leaves it there. With the update in
# the graph the step dropped their gradients, so the second optimizer never
# moved them.
@needs_native
@pytest.mark.parametrize("breaks", [False, True], ids=["one-graph", "graph-breaks"])
def test_parameters_the_optimizer_does_not_hold_get_their_gradient_in_grad(breaks):
    def build():
        torch.manual_seed(0)
        m = _EmbeddingBag(breaks)
        main = torch.optim.Adam(list(m.a.parameters()) + list(m.h.parameters()), lr=1e-2)
        return m, main, torch.optim.SGD(m.e.parameters(), lr=0.5)

    g = torch.Generator().manual_seed(1)
    data = [(torch.randint(0, 50, (8, 5), generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(5)]
    m1, main1, emb1 = build()
    m2, main2, emb2 = build()
    step = memfit.fit(m2, main2, F.cross_entropy, data[0])
    for x, y in data:
        main1.zero_grad()
        emb1.zero_grad()
        F.cross_entropy(m1(x), y).backward()
        main1.step()
        emb1.step()
        emb2.zero_grad()
        step(x, y)
        emb2.step()
        assert torch.equal(m1.e.weight.grad, m2.e.weight.grad) if EXACT else torch.allclose(
            m1.e.weight.grad, m2.e.weight.grad, rtol=1e-5)
        assert all(p.grad is None for p in list(m2.a.parameters()) + list(m2.h.parameters()))
    for (name, a), b in zip(m1.named_parameters(), m2.parameters()):
        assert torch.equal(a, b) if EXACT else torch.allclose(a, b, rtol=1e-5), name
    assert step.segmented == breaks


class _GeluIntoABatchFirstGru(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.r, self.o = nn.Linear(8, 16), nn.GRU(16, 16, batch_first=True), nn.Linear(16, 6)

    def forward(self, x):
        y, _ = self.r(F.gelu(self.c(x)))
        return self.o(y)


# torch 1.13's CPU gelu_backward (float32) reads the wrong elements when the gradient
# and the input are laid out differently: the GRU's input gradient comes back
# through a transpose. Eager autograd gets the linear layer's gradient wrong (by
# 4e-2 in a speech model's, against float64); the plan gives the kernel both
# inputs in one layout (runner.kernel), and its gradient is the float64 one.
@needs_native
def test_gelu_backward_of_a_transposed_gradient_is_right():
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    m = _GeluIntoABatchFirstGru()
    reference = copy.deepcopy(m).double()
    reference(x.double()).pow(2).mean().backward()
    step = memfit.fit(m, None, lambda out: out.pow(2).mean(), (x,))
    step(x)
    for (name, want), got in zip(reference.named_parameters(), m.parameters()):
        assert torch.allclose(got.grad.double(), want.grad, rtol=1e-4, atol=1e-7), name


class EdgeMessages(nn.Module):
    """Two rounds of message passing over an edge list: each edge's message from both of its
    ends through an MLP, summed into its destination with index_add_."""

    def __init__(self, d=16):
        super().__init__()
        self.inp, self.msg, self.up, self.out = nn.Linear(6, d), nn.Linear(2 * d, d), nn.Linear(2 * d, d), nn.Linear(d, 3)

    def forward(self, x, src, dst):
        h = torch.relu(self.inp(x))
        for _ in range(2):
            m = torch.relu(self.msg(torch.cat([h[src], h[dst]], -1)))
            h = torch.relu(self.up(torch.cat([h, torch.zeros_like(h).index_add_(0, dst, m)], -1)))
        return self.out(h)


@needs_native
def test_a_gnn_step_splits_along_its_edges():
    # The messages along the edges are the step's largest maps, and they
    # end in a sum into the nodes: no batch split reaches them. The edges
    # are a dimension of their own (the gathers follow their indices), each
    # part adds its messages into what the parts before it left
    # (index_add_, and index_put with accumulate in the backward), and
    # each layer's runs are split with their forwards again: under 0.4 of
    # the peak, where no plan of the unsplit step goes below 0.6. f64: equal
    # to eager within 1e-12.
    torch.manual_seed(0)
    m1 = EdgeMessages().double()
    m2 = copy.deepcopy(m1)
    o1, o2 = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (m1, m2))
    g = torch.Generator().manual_seed(1)
    n, e = 64, 2048
    data = [(torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, n, (e,), generator=g),
             torch.randint(0, n, (e,), generator=g), torch.randint(0, 3, (n,), generator=g)) for _ in range(3)]
    loss = lambda out, y: F.cross_entropy(out, y)
    step = memfit.fit(m2, o2, loss, data[0], mem_limit_ratio=0.4, fission=True)
    fissions = [v for k, v in step.last.plan.graph.metadata.items() if k.startswith("fission.")]
    assert any(f.startswith("input1[0]") for f in fissions), fissions
    assert step.last.figures["optimized"]["peak_bytes"] <= 0.4 * step.last.figures["original"]["peak_bytes"]
    for x, src, dst, y in data:
        o1.zero_grad()
        expected = loss(m1(x, src, dst), y)
        expected.backward()
        o1.step()
        assert abs(step(x, src, dst, y).item() - expected.item()) <= 1e-12
    for k, v in m1.state_dict().items():
        assert (m2.state_dict()[k] - v).abs().max().item() <= 1e-12, k
