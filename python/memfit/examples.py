"""Small example models shared by the capture tests and the benchmarks."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinyBert(nn.Module):
    """A BERT-style encoder in plain torch.nn: embeddings, attention, GELU MLP,
    LayerNorm and (when dropout > 0) dropout; a classifier on the first token."""

    def __init__(self, vocab=50, hidden=32, heads=4, layers=2, seq=16, classes=3, dropout=0.1):
        super().__init__()
        self.heads = heads
        self.word = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(seq, hidden)
        self.norm = nn.LayerNorm(hidden)
        # Identity rather than Dropout(0): even p = 0 traces a random op.
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.layers = nn.ModuleList()
        for _ in range(layers):
            self.layers.append(nn.ModuleDict({
                "qkv": nn.Linear(hidden, 3 * hidden), "out": nn.Linear(hidden, hidden), "ln1": nn.LayerNorm(hidden),
                "fc1": nn.Linear(hidden, 4 * hidden), "fc2": nn.Linear(4 * hidden, hidden), "ln2": nn.LayerNorm(hidden)}))
        self.head = nn.Linear(hidden, classes)

    def forward(self, ids):
        b, s = ids.shape
        x = self.drop(self.norm(self.word(ids) + self.pos(torch.arange(s, device=ids.device))))
        for layer in self.layers:
            q, k, v = layer["qkv"](x).chunk(3, dim=-1)
            split = lambda t: t.reshape(b, s, self.heads, -1).transpose(1, 2)  # noqa: E731
            q, k, v = split(q), split(k), split(v)
            att = self.drop(torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5), dim=-1))
            ctx = (att @ v).transpose(1, 2).reshape(b, s, -1)
            x = layer["ln1"](x + self.drop(layer["out"](ctx)))
            x = layer["ln2"](x + self.drop(layer["fc2"](F.gelu(layer["fc1"](x)))))
        return self.head(x[:, 0])


class TorchEncoder(nn.Module):
    """PyTorch's own nn.TransformerEncoderLayer (batch first) and a classifier
    on the mean over the sequence: nn.MultiheadAttention's [S, B*heads, dh]
    layout, which fission follows along the batch."""

    def __init__(self, d_model=64, heads=4, ff=128, classes=10, dropout=0.1):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=heads, dim_feedforward=ff, batch_first=True,
                                                dropout=dropout)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x):
        return self.head(self.layer(x).mean(1))


def conv_bn_dropout(classes=5):
    """Conv + BatchNorm + ReLU + dropout + Linear on 3x8x8 images: a model with
    running statistics (buffers updated in place) and a random op."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.25),
                         nn.Flatten(), nn.Linear(8 * 8 * 8, classes))


def weighted_sum(out, *inputs):
    """A loss whose gradient is not trivial (out.sum() after a LayerNorm is ~0)."""
    w = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    return (out * w).sum()
