"""A corpus of small modules with the idioms of real PyTorch code, for
python/bench/capture_coverage.py (and, a fast subset, the test suite).

Each case builds (module, example inputs, loss_fn or None, number of inputs
the module takes or None). The idioms (issue 20): values read in Python,
lists / dicts of tensors in and out, in-place ops on views and slices,
buffers updated in forward, tied weights, a module called twice,
torch.no_grad regions, custom autograd.Functions, hooks, nn.RNN / LSTM / GRU,
torch.where / masked_fill masks, integer and bool tensors, non-contiguous
inputs, mixed dtypes, and common layers and losses.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

CORPUS: Dict[str, Callable] = {}
# Programs that must not capture as one graph (the error names why); they run with
# graph breaks (memfit.segments / memfit.op_breaks), equal to eager.
BREAKS_ONLY: Dict[str, str] = {"side_effect_on_values": "the forward changes Python state: `log`"}


def case(fn: Callable) -> Callable:
    CORPUS[fn.__name__] = fn
    return fn


def ce(out, x, y):
    return F.cross_entropy(out, y)


class _Lin(nn.Module):
    def __init__(self, n=8, m=8):
        super().__init__()
        self.fc = nn.Linear(n, m)


# ---- values read in Python -------------------------------------------------------


class LengthMask(_Lin):
    def forward(self, x, lengths):
        steps = int(lengths.max())
        mask = torch.arange(steps)[None, :] < lengths[:, None]
        y = self.fc(x[:, :steps])
        return (y * mask[..., None]).sum() / lengths.sum()


@case
def length_mask():
    return LengthMask(), (torch.randn(3, 7, 8), torch.tensor([3, 6, 2])), None, None


class IfOnTensor(_Lin):
    def forward(self, x):
        y = self.fc(x)
        if y.abs().max() > 1.0:
            y = y / y.abs().max()
        return y


@case
def if_on_tensor():
    return IfOnTensor(), (torch.randn(4, 8),), None, None


class ItemScale(_Lin):
    def forward(self, x):
        scale = x.std().item()
        return self.fc(x) / (scale + 1.0)


@case
def item_scale():
    return ItemScale(), (torch.randn(4, 8),), None, None


class ToListSplit(_Lin):
    def forward(self, x, sizes):
        parts = torch.split(self.fc(x), sizes.tolist())
        return sum(p.mean() * (i + 1) for i, p in enumerate(parts))


@case
def tolist_split():
    return ToListSplit(), (torch.randn(6, 8), torch.tensor([2, 1, 3])), None, None


class LoopBound(_Lin):
    def forward(self, x, n):
        for _ in range(n):
            x = torch.tanh(self.fc(x))
        return x


@case
def loop_bound_from_tensor():
    return LoopBound(), (torch.randn(4, 8), torch.tensor(3)), None, None


class BoolMaskSelect(_Lin):
    def forward(self, x):
        y = self.fc(x)
        return y[x > 0].pow(2).sum()


@case
def boolean_mask_select():
    return BoolMaskSelect(), (torch.randn(4, 8),), None, None


class NumpyFeedsPython(nn.Module):
    """.numpy() and nonzero feeding Python (numpy arithmetic, an index built on the host)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.tanh(self.a(x))
        keep = (h.sum(1) > 0).nonzero().flatten().numpy()
        scale = float(h.detach().abs().numpy().mean())
        return self.b(h[torch.as_tensor(keep)] if len(keep) else h) * (1.0 + scale)


@case
def numpy_and_nonzero_feed_python():
    return NumpyFeedsPython(), (torch.randn(6, 8),), None, None


class HostSideEffect(nn.Module):
    """A Python side effect on values (a running log of the loss scale) between two submodules."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec = nn.Linear(8, 8), nn.Linear(8, 8)
        self.log: List[float] = []

    def forward(self, x):
        h = self.enc(x)
        self.log.append(h.norm().item())
        if self.log[-1] > sum(self.log) / len(self.log):
            h = h * 0.5
        return self.dec(torch.relu(h))


@case
def side_effect_on_values():
    return HostSideEffect(), (torch.randn(4, 8),), None, None


# ---- structured inputs and outputs -------------------------------------------------


class ListIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 4), nn.Linear(6, 4)

    def forward(self, xs: List[torch.Tensor]):
        return self.a(xs[0]) + self.b(xs[1])


@case
def list_of_tensors_in():
    return ListIn(), ([torch.randn(3, 8), torch.randn(3, 6)],), None, None


class DictInOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(8, 8)
        self.cls = nn.Linear(8, 3)

    def forward(self, batch):
        h = torch.relu(self.enc(batch["x"]))
        return {"logits": self.cls(h), "features": h}


@case
def dict_in_dict_out():
    def loss(out, batch):
        return F.cross_entropy(out["logits"], batch["y"]) + 0.1 * out["features"].pow(2).mean()
    return DictInOut(), ({"x": torch.randn(4, 8), "y": torch.randint(0, 3, (4,))},), loss, None


class TupleOut(_Lin):
    def forward(self, x):
        y = self.fc(x)
        return y.relu(), [y.sigmoid(), y.tanh()]


@case
def tuple_and_list_out():
    return TupleOut(), (torch.randn(4, 8),), None, None


# ---- in-place ops, buffers, weights --------------------------------------------------


class InplaceSlice(_Lin):
    def forward(self, x):
        y = self.fc(x)
        y[:, 0] += 1.0
        y[1:3].mul_(2.0)
        y.view(-1)[::3].zero_()
        return y


@case
def inplace_on_views_and_slices():
    return InplaceSlice(), (torch.randn(4, 8),), None, None


class BufferEMA(_Lin):
    def __init__(self):
        super().__init__()
        self.register_buffer("avg", torch.zeros(8))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        y = self.fc(x)
        with torch.no_grad():
            self.avg.mul_(0.9).add_(0.1 * y.mean(0))
            self.count += 1
        return y - self.avg


@case
def buffer_updated_in_forward():
    return BufferEMA(), (torch.randn(4, 8),), None, None


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.out = nn.Linear(8, 20, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, ids):
        return self.out(torch.tanh(self.emb(ids)))


@case
def tied_weights():
    def loss(out, ids, y):
        return F.cross_entropy(out.reshape(-1, 20), y.reshape(-1))
    return Tied(), (torch.randint(0, 20, (2, 5)), torch.randint(0, 20, (2, 5))), loss, 1


class SharedTwice(_Lin):
    def forward(self, x):
        return self.fc(torch.relu(self.fc(x)))


@case
def module_called_twice():
    return SharedTwice(), (torch.randn(4, 8),), None, None


class NoGradRegion(nn.Module):
    def __init__(self):
        super().__init__()
        self.teacher = nn.Linear(8, 8)
        self.student = nn.Linear(8, 8)

    def forward(self, x):
        with torch.no_grad():
            target = self.teacher(x).softmax(-1)
        return F.kl_div(self.student(x).log_softmax(-1), target, reduction="batchmean")


@case
def no_grad_region():
    return NoGradRegion(), (torch.randn(4, 8),), None, None


class Frozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.head(torch.relu(self.backbone(x)))


@case
def frozen_parameters():
    return Frozen(), (torch.randn(4, 8), torch.randint(0, 3, (4,))), ce, 1


# ---- autograd machinery --------------------------------------------------------------


class ClampGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0) * 2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * (x > 0).to(g.dtype) + 0.01 * g


class CustomFunction(_Lin):
    def forward(self, x):
        return ClampGrad.apply(self.fc(x))


@case
def custom_autograd_function():
    return CustomFunction(), (torch.randn(4, 8),), None, None


class Hooks(_Lin):
    def __init__(self):
        super().__init__()
        self.fc2 = nn.Linear(8, 8)
        self.fc.register_forward_hook(lambda m, inp, out: out * 0.5)
        self.fc2.register_forward_pre_hook(lambda m, inp: (inp[0] + 1.0,))

    def forward(self, x):
        h = torch.relu(self.fc(x))
        h.register_hook(lambda g: g * 3.0)  # a tensor hook on the gradient
        return self.fc2(h)


@case
def hooks():
    return Hooks(), (torch.randn(4, 8),), None, None


class Checkpointed(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8))

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        return checkpoint(self.block, x)


@case
def activation_checkpoint():
    return Checkpointed(), (torch.randn(4, 8, requires_grad=True),), None, None


# ---- recurrent layers ------------------------------------------------------------------


def _rnn(cls, **kw):
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(16, 32, batch_first=True, **kw)
            self.fc = nn.Linear(64 if kw.get("bidirectional") else 32, 4)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])
    return Wrap


@case
def rnn_bidirectional():
    return _rnn(nn.RNN, bidirectional=True)(), (torch.randn(2, 10, 16), torch.randint(0, 4, (2,))), ce, 1


@case
def gru_bidirectional():
    return _rnn(nn.GRU, bidirectional=True)(), (torch.randn(2, 10, 16), torch.randint(0, 4, (2,))), ce, 1


@case
def lstm_bidirectional():
    return _rnn(nn.LSTM, bidirectional=True)(), (torch.randn(2, 10, 16), torch.randint(0, 4, (2,))), ce, 1


@case
def lstm_two_layers():
    return _rnn(nn.LSTM, num_layers=2)(), (torch.randn(2, 6, 16), torch.randint(0, 4, (2,))), ce, 1


class LSTMCellLoop(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(8, 8)

    def forward(self, x):
        h = c = torch.zeros(x.shape[1], 8)
        for t in range(x.shape[0]):
            h, c = self.cell(x[t], (h, c))
        return h


@case
def lstm_cell_loop():
    return LSTMCellLoop(), (torch.randn(5, 3, 8),), None, None


# ---- masks, integer and bool tensors, layouts, dtypes ------------------------------------


class WhereMask(_Lin):
    def forward(self, x, mask):
        y = self.fc(x)
        y = torch.where(mask, y, torch.zeros_like(y))
        return y.masked_fill(~mask, -1e4).softmax(-1)


@case
def where_and_masked_fill():
    return WhereMask(), (torch.randn(4, 8), torch.rand(4, 8) > 0.3), None, None


class IntOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1]).expand_as(ids)
        keep = (ids % 2 == 0).float()
        return (self.emb(ids) * keep[..., None] + self.emb(pos)).sum(1)


@case
def integer_and_bool_tensors():
    return IntOps(), (torch.randint(0, 10, (3, 5)),), None, None


class Gather(_Lin):
    def forward(self, x, idx):
        y = self.fc(x)
        cols = y[:, idx]  # aten.index with a None entry
        picked = torch.gather(y, 1, idx.expand(y.shape[0], -1))
        return cols.sum() + picked.pow(2).sum() + y.index_select(0, idx[:1]).sum()


@case
def index_gather_select():
    return Gather(), (torch.randn(4, 8), torch.tensor([1, 5, 2])), None, None


class ScatterAdd(_Lin):
    def forward(self, x, idx):
        y = self.fc(x)
        out = torch.zeros(3, 8).index_add(0, idx, y)
        return out.scatter_add(1, torch.zeros(3, 8, dtype=torch.long), out)


@case
def index_add_scatter_add():
    return ScatterAdd(), (torch.randn(4, 8), torch.tensor([0, 2, 1, 2])), None, None


@case
def non_contiguous_input():
    return nn.Linear(8, 4), (torch.randn(8, 6).t(),), None, None


class ChannelsLast(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


@case
def channels_last_input():
    return ChannelsLast(), (torch.randn(2, 3, 6, 6).to(memory_format=torch.channels_last),), None, None


class MixedDtypes(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8).double()
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.fc(x.double()).float())


@case
def mixed_dtypes():
    return MixedDtypes(), (torch.randn(4, 8),), None, None


class ResizeNew(_Lin):
    def forward(self, x):
        h = x.data.new().resize_(x.shape[0], 8).zero_()
        return self.fc(x) + h


@case
def data_new_resize():
    return ResizeNew(), (torch.randn(4, 8),), None, None


# ---- layers and losses -----------------------------------------------------------------


@case
def multihead_attention():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

        def forward(self, x, pad):
            return self.attn(x, x, x, key_padding_mask=pad)[0]
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    return Attn(), (torch.randn(2, 5, 16), pad), None, None


@case
def transformer_encoder():
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
    return nn.TransformerEncoder(layer, 2), (torch.randn(2, 5, 16),), None, None


class ScaledAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(16, 48)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = torch.einsum("bqd,bkd->bqk", q, k) / math.sqrt(16)
        causal = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1)
        return att.masked_fill(causal, float("-inf")).softmax(-1) @ v


@case
def causal_attention_einsum():
    return ScaledAttention(), (torch.randn(2, 5, 16),), None, None


@case
def conv1d_groupnorm():
    return nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.SiLU(), nn.Conv1d(8, 4, 1)), \
        (torch.randn(2, 4, 10),), None, None


@case
def conv3d_pool3d():
    return nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU(), nn.MaxPool3d(2),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten()), (torch.randn(2, 2, 4, 6, 6),), None, None


@case
def instance_norm_reflect_pad():
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4, affine=True), nn.ReLU(),
                         nn.ReplicationPad2d(1), nn.Conv2d(4, 3, 3)), (torch.randn(2, 3, 8, 8),), None, None


@case
def pixel_shuffle_upsample():
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2), nn.Upsample(scale_factor=2,
                         mode="bilinear", align_corners=False), nn.Conv2d(3, 3, 1)), (torch.randn(2, 3, 4, 4),), \
        None, None


@case
def transposed_conv_dropout2d():
    return nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2), nn.Dropout2d(0.2), nn.LeakyReLU(0.1),
                         nn.Conv2d(4, 2, 1)), (torch.randn(2, 3, 5, 5),), None, None


@case
def weight_and_spectral_norm():
    return nn.Sequential(nn.utils.weight_norm(nn.Linear(8, 8)), nn.ELU(), nn.utils.spectral_norm(nn.Linear(8, 4))), \
        (torch.randn(4, 8),), None, None


@case
def activations_zoo():
    return nn.Sequential(nn.Linear(8, 8), nn.PReLU(), nn.Linear(8, 8), nn.Mish(), nn.Linear(8, 8), nn.Softplus(),
                         nn.Linear(8, 8), nn.Hardtanh(), nn.Linear(8, 8), nn.GLU()), (torch.randn(4, 8),), None, None


@case
def stochastic_depth():
    from torchvision.ops import StochasticDepth

    class Block(_Lin):
        def __init__(self):
            super().__init__()
            self.sd = StochasticDepth(0.3, "row")

        def forward(self, x):
            return x + self.sd(self.fc(x))
    return Block(), (torch.randn(6, 8),), None, None


@case
def embedding_bag_cumsum_topk():
    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag(20, 8, mode="mean")

        def forward(self, ids, offsets):
            y = self.bag(ids, offsets)
            return y.cumsum(1).topk(3, dim=1).values
    return Bag(), (torch.randint(0, 20, (7,)), torch.tensor([0, 3, 5])), None, None


@case
def bce_and_label_smoothing():
    def loss(out, x, y, t):
        return F.binary_cross_entropy_with_logits(out[:, 0], t) + F.cross_entropy(out, y, label_smoothing=0.1)
    return nn.Linear(8, 3), (torch.randn(4, 8), torch.randint(0, 3, (4,)), torch.rand(4)), loss, 1


@case
def smooth_l1_and_mse():
    def loss(out, x, y):
        return F.smooth_l1_loss(out, y) + F.mse_loss(out, y) + F.l1_loss(out, y)
    return nn.Linear(8, 3), (torch.randn(4, 8), torch.randn(4, 3)), loss, 1


@case
def ctc_loss():
    class Speech(_Lin):
        def __init__(self):
            super().__init__(8, 5)

        def forward(self, x):
            return self.fc(x).log_softmax(-1)  # [T, N, C]

    def loss(out, x, targets):
        return F.ctc_loss(out, targets, [6, 6], [2, 3])
    return Speech(), (torch.randn(6, 2, 8), torch.tensor([[1, 2, 0], [1, 3, 4]])), loss, 1


@case
def ctc_loss_tensor_lengths():
    """The lengths as tensors (aten._ctc_loss.Tensor): log_alpha's extent is the
    longest target, a value the graph declares."""
    class Speech(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(8, 16, 3, padding=1)
            self.fc = nn.Linear(16, 6)

        def forward(self, x):  # [N, 8, T] -> [T, N, C]
            return self.fc(F.gelu(self.conv(x), approximate="tanh").transpose(1, 2)).log_softmax(-1).transpose(0, 1)

    def loss(out, x, targets):
        t, n, _ = out.shape
        return F.ctc_loss(out, targets, torch.full((n,), t, dtype=torch.long), torch.tensor([5, 3, 4, 5]))
    return Speech(), (torch.randn(4, 8, 20), torch.randint(1, 6, (4, 5))), loss, 1


@case
def grid_sample_affine():
    class STN(nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = nn.Linear(3 * 6 * 6, 6)
            nn.init.zeros_(self.loc.weight)
            with torch.no_grad():
                self.loc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

        def forward(self, x):
            theta = self.loc(x.flatten(1)).view(-1, 2, 3)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            return F.grid_sample(x, grid, align_corners=False)
    return STN(), (torch.randn(2, 3, 6, 6),), None, None


@case
def unfold_fold_patches():
    class Patches(_Lin):
        def __init__(self):
            super().__init__(12, 12)

        def forward(self, x):
            p = F.unfold(x, 2, stride=2)  # [N, 12, L]
            return F.fold(self.fc(p.transpose(1, 2)).transpose(1, 2), (4, 4), 2, stride=2)
    return Patches(), (torch.randn(2, 3, 4, 4),), None, None


# ---- held-out idioms (issue 20, second round) ------------------------------------------


@case
def chunk_split_cat():
    class SplitCat(_Lin):
        def __init__(self):
            super().__init__(12, 12)

        def forward(self, x):
            a, b, c = torch.chunk(self.fc(x), 3, dim=1)
            head, tail = torch.split(x, [5, 7], dim=1)
            mixed = torch.cat([c * a.sigmoid(), b, head.flip(1)[:, :4]], dim=1)
            return torch.stack([mixed, torch.cat([tail[:, :6], tail[:, 1:] * 0.5], 1)[:, :12]], 0).tanh()
    return SplitCat(), (torch.randn(4, 12),), None, None


class MocoQueue(nn.Module):
    """MoCo's queue: a parameter-free buffer written in place on a slice whose start
    is read from another buffer (`int(self.ptr)`)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(8, 4)
        self.register_buffer("queue", torch.randn(4, 6))
        self.register_buffer("ptr", torch.zeros(1, dtype=torch.long))

    def forward(self, x):
        q = F.normalize(self.enc(x), dim=1)
        negatives = q @ self.queue.clone().detach()  # MoCo: the queue as it was before this step
        logits = torch.cat([(q * q.detach().roll(1, 0)).sum(1, keepdim=True), negatives], 1) / 0.07
        with torch.no_grad():
            start = int(self.ptr)
            n = q.shape[0]
            self.queue[:, start:start + n] = q.detach().t()
            self.ptr[0] = (start + n) % self.queue.shape[1]
        return logits


@case
def inplace_slice_of_buffer():
    return MocoQueue(), (torch.randn(3, 8), torch.zeros(3, dtype=torch.long)), ce, 1


@case
def interpolate_nearest():
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.out = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            h = F.interpolate(torch.relu(self.conv(x)), scale_factor=2, mode="nearest")
            return self.out(h + F.interpolate(x[:, :1], size=h.shape[-2:], mode="nearest"))
    return Up(), (torch.randn(2, 3, 4, 5),), None, None


@case
def embedding_padding_idx():
    class PaddedBag(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(12, 8, padding_idx=0)
            self.fc = nn.Linear(8, 3)

        def forward(self, ids):
            keep = (ids != 0).unsqueeze(-1).float()
            return self.fc((self.emb(ids) * keep).sum(1) / keep.sum(1).clamp(min=1))
    ids = torch.tensor([[3, 5, 0, 0], [0, 0, 0, 0], [7, 1, 2, 11]])
    return PaddedBag(), (ids, torch.tensor([0, 1, 2])), ce, 1


class MaskedSelectLoss(_Lin):
    def forward(self, x, valid):
        y = self.fc(x)
        picked = torch.masked_select(y, valid)  # as many elements as `valid` holds: a shape guard
        return picked.pow(2).mean() + y.mean()


@case
def masked_select_data_dependent():
    return MaskedSelectLoss(), (torch.randn(4, 8), torch.rand(4, 8) > 0.5), None, None


class NonzeroRows(_Lin):
    def forward(self, x):
        y = self.fc(x)
        rows, cols = torch.nonzero(y > 0, as_tuple=True)
        return y[rows, cols].sum() + torch.nonzero(x[:, 0] > 0).numel() * y.mean()


@case
def nonzero_indexing():
    return NonzeroRows(), (torch.randn(5, 8),), None, None


class RepeatInterleave(_Lin):
    def forward(self, x, counts):
        y = self.fc(x)
        wide = y.repeat_interleave(2, dim=1)  # a constant count
        rows = y.repeat_interleave(counts, dim=0)  # counts from a tensor: data-dependent rows
        return wide.sum(1).pow(2).sum() + rows.tanh().sum()


@case
def repeat_interleave_counts():
    return RepeatInterleave(), (torch.randn(3, 8), torch.tensor([2, 0, 3])), None, None


class TiedFunctional(nn.Module):
    """LayerNorm without affine parameters; the output projection reuses the embedding
    matrix through F.linear (tying without a shared module attribute)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.norm = nn.LayerNorm(8, elementwise_affine=False)
        self.mix = nn.Linear(8, 8)

    def forward(self, ids):
        h = self.norm(self.emb(ids) + self.mix(self.emb(ids)).relu())
        return F.linear(h, self.emb.weight)


@case
def layernorm_no_affine_tied_functional():
    def loss(out, ids, y):
        return F.cross_entropy(out.reshape(-1, 16), y.reshape(-1))
    return TiedFunctional(), (torch.randint(0, 16, (2, 5)), torch.randint(0, 16, (2, 5))), loss, 1


class RefineLoop(nn.Module):
    """A module called in a Python loop whose bound is computed from the data."""

    def __init__(self):
        super().__init__()
        self.step = nn.Sequential(nn.Linear(8, 8), nn.Tanh())

    def forward(self, x):
        n = int(x.abs().mean() * 4) + 1
        for _ in range(n):
            x = x + 0.5 * self.step(x)
        return x


@case
def module_loop_data_bound():
    return RefineLoop(), (torch.randn(3, 8),), None, None


class GumbelHard(_Lin):
    """Straight-through Gumbel-softmax (exponential_ noise, one_hot of the argmax)."""

    def forward(self, x):
        logits = self.fc(x)
        soft = F.gumbel_softmax(logits, tau=0.5, hard=True)
        hard = F.one_hot(logits.argmax(-1), 8).to(logits.dtype)
        return (soft * logits).sum() + (hard - logits.softmax(-1).detach() + logits.softmax(-1)).pow(2).sum()


@case
def gumbel_softmax_one_hot():
    return GumbelHard(), (torch.randn(4, 8),), None, None


class TopLevelRead(nn.Module):
    """Parameters used directly in the top-level forward around a value read (with
    --no-specialize: op-level graph breaks; there is no submodule to segment)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 8) * 0.3)
        self.v = nn.Parameter(torch.randn(3, 8) * 0.3)

    def forward(self, x):
        h = torch.tanh(x @ self.w)
        if h.abs().max().item() > 0.5:
            h = h * 0.5
        return F.linear(h, self.v)


@case
def top_level_read_with_parameters():
    return TopLevelRead(), (torch.randn(4, 8), torch.randint(0, 3, (4,))), ce, 1


def corpus_cases() -> List:
    from capture_coverage import Case

    return [Case(name, build, group="corpus") for name, build in CORPUS.items()]
